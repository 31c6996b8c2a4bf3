"""Tracking: MLflow sqlite store (store), typed tracking records (records), ingesting finished targets (ingest) and
live metrics during training (live)."""
