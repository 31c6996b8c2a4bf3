"""Statistics with no model and no project types: the paired bootstrap and sign-flip test (paired) and the Gram-matrix
statistics of the gradient diagnostic (gram_stats)."""
