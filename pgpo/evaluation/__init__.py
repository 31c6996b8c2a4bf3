"""Evaluation: lmms-eval generates k samples per question (pgpo.evaluation.generate), pgpo.rewards.scoring grades them
separately on CPU (pgpo.evaluation.score). Task definitions live in pgpo/lmms_tasks (lmms-eval --include_path)."""
