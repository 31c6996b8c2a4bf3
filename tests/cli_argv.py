"""Command lines the fault tests share (tests/data/test_faults_inputs.py, tests/util/test_user_errors.py)."""

from pgpo.config.schema import REPO

RECIPE = str(REPO / "workflows/config/train/tiny.yaml")


def train_argv(tiny_dir, data, out, *sets):
    """`pgpo train` of grpo on the tiny recipe, the model and data folders given, with `--set` overrides."""
    argv = ["train", "--method", "grpo", "--config", RECIPE, "--out", str(out), "--set", f"model.path={tiny_dir}",
            "--set", f"data.train={data / 'train.jsonl'}"]
    for s in sets:
        argv += ["--set", s]
    return argv
