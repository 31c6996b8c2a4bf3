"""The Snakemake workflow's tested Python: planning from the schema-validated config (plan), the commands the
rules run (launch), the training-data preparation step (prepare), and the wall-time report (report)."""
