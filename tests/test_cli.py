"""The `pgpo` command line: subcommands, and clear errors for bad input."""

import pytest

from pgpo.cli import main


def test_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("build-tiny", "make-data", "warm-start", "train", "probe", "methods"):
        assert cmd in out


@pytest.mark.parametrize("argv, message", [
    (["train", "--method", "nope", "--out", "x"], "unknown method 'nope'"),
    (["train", "--method", "pgpo", "--out", "x", "--method-set", "shaper.params.tau=2"], "tau must be in"),
    (["train", "--method", "pgpo", "--out", "x", "--method-set", "shaper.params.beta=-1"], "beta must be >= 0"),
    (["train", "--method", "pgpo", "--out", "x", "--config", "missing.yaml"], "missing.yaml: no such file"),
])
def test_bad_input_exits_2_with_a_message(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_data_is_named(capsys, tmp_path, tiny_dir):
    assert main(["train", "--method", "grpo", "--out", str(tmp_path / "r"), "--set", f"model.path={tiny_dir}",
                 "--set", f"data.train={tmp_path}/none.jsonl"]) == 2
    assert "none.jsonl: no such data file" in capsys.readouterr().err


def test_methods_lists_the_registry(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "pgpo_grpo" in out and "shaper=pgpo" in out and "dynamic_sampling=True" in out
