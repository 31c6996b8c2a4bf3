"""A reward of the user's own changes training (issue 25, item 1): registered from a module outside the package,
named in a recipe that extends the tiny one, through `pgpo train` as users run it."""

import json
import os
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from training_runs import train_cmd

from pgpo.config.schema import REPO

pytestmark = pytest.mark.slow


def test_a_user_reward_from_outside_the_package_changes_training(tiny_dir, tiny_data, tmp_path):
    import subprocess

    (tmp_path / "lab_rewards.py").write_text(textwrap.dedent('''
        def alternate(inputs, params):
            """Half of each group right: a signal the untrained tiny model cannot earn from accuracy."""
            return [float(i % 2) for i in range(len(inputs.completions))]

        def flaky(inputs, params):
            """Breaks on one completion per batch (NaN): counted, its group neutralised, the rest trains."""
            return [float("nan")] + [0.0] * (len(inputs.completions) - 1)
    '''))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"extends: {REPO / 'workflows/config/train/tiny.yaml'}\n"
                      "rewards: {'lab_rewards:alternate': {weight: 1.0}, format: {weight: 0.1}, "
                      "'lab_rewards:flaky': {weight: 0.0}}\n")
    out = tmp_path / "run"
    cmd = train_cmd(tiny_dir, tiny_data, out, "grpo", steps=2)
    cmd[cmd.index("--config") + 1] = str(recipe)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["rewards/alternate_reward/mean"] == pytest.approx(0.5)
    fmt = rows[-1]["rewards/format_reward/mean"]
    assert rows[-1]["rewards/alternate_reward/share"] == pytest.approx(0.5 / (0.5 + 0.1 * fmt))
    assert [r["faults/reward_errors/flaky"] for r in rows] == [1.0, 1.0]  # one broken completion per step
    assert [r["faults/nan_reward_completions"] for r in rows] == [1.0, 1.0] and rows[-1]["faults/reward_errors/format"] == 0
    base, final = load_file(tiny_dir / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    assert any(not torch.equal(base[k], final[k]) for k in base)  # with the default reward nothing would move
    recorded = json.loads((out / "run.json").read_text())["config"]["rewards"]
    assert list(recorded) == ["lab_rewards:alternate", "format", "lab_rewards:flaky"]  # the run records what it was rewarded for
    assert sys.modules.get("lab_rewards") is None  # imported in the training process, not here
