"""Datasets in the project's schema with checksums and validation (datasets), prompt rendering (prompts), and the
ViRL39K preparation (virl39k)."""
