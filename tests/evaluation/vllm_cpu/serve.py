"""Test-only: `trl vllm-serve` on vLLM's CPU build. Usage: python tests/evaluation/vllm_cpu/serve.py <trl vllm-serve arguments>

TRL 1.16's `trl vllm-serve` builds a `python -m vllm.entrypoints.cli.main serve ...` command (TRL's server
contract: processed log-probs, dev-mode endpoints, scale-out routes) and execs it. vLLM's CLI asks the package
metadata for the version of "vllm", and the CPU build's distribution is named "vllm-cpu" (PackageNotFoundError).
This wrapper builds TRL's exact command and runs vLLM's CLI with that one lookup answered from vllm-cpu.
Nothing listens beyond loopback unless --host says so (the tests pass 127.0.0.1)."""

import os
import sys

if __name__ == "__main__" and sys.argv[1:2] == ["--vllm-cli"]:  # the exec'd server process
    import importlib.metadata

    _version = importlib.metadata.version
    # as vLLM's own platform check answers it (vllm/platforms: version("vllm-cpu") + "+cpu"): the "+cpu" is what
    # makes it pick the CPU platform
    importlib.metadata.version = lambda name: _version("vllm-cpu") + "+cpu" if name == "vllm" else _version(name)
    from vllm.entrypoints.cli.main import main

    sys.argv = ["vllm", *sys.argv[2:]]
    sys.exit(main())

if __name__ == "__main__":
    from trl.scripts.vllm_serve import build_command, make_parser

    script_args, extra_args = make_parser().parse_args_and_config(return_remaining_strings=True)
    command = build_command(script_args, extra_args)
    at = command.index("vllm.entrypoints.cli.main")
    assert command[at - 1] == "-m", command
    command[at - 1:at + 1] = [os.path.abspath(__file__), "--vllm-cli"]
    os.execve(sys.executable, command, {**os.environ, "VLLM_SERVER_DEV_MODE": "1"})  # as trl vllm-serve sets
