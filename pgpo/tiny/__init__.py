"""The embedded default: a tiny Qwen2.5-VL built offline and synthetic visual-reasoning data."""
