"""Rewards and grading: answer extraction and scoring (scoring) and the graders registered per task (graders)."""
