"""Results: Table 1 / Table 7 / ablation tables (tables) and their paired views (paired_tables), the power planner
(`pgpo power`: seeds / questions / samples for a chosen difference), figures, model cards, and `pgpo status`."""
