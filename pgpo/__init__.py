"""PGPO reproduction and benchmark harness: `ls pgpo` shows the layers (docs/code-layout.md).

Only `pgpo.training` imports trl; config, methods, data, rewards, models, stats and util import neither trl nor the
training package, and nothing imports the CLI (tests/test_structure.py enforces both).
"""

__version__ = "0.1.0"
