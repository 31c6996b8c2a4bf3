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


def _subparsers():
    import argparse

    from pgpo.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return parser, sub.choices


def test_every_flag_has_a_help_line_and_help_shows_its_default():
    import argparse

    parser, commands = _subparsers()
    assert len(commands) >= 15
    for name, sub in [("pgpo", parser), *commands.items()]:
        text = " ".join(sub.format_help().split())  # argparse wraps lines
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            flag = "/".join(action.option_strings) or action.dest
            assert action.help, f"pgpo {name} {flag}: no help line"
            default = action.default
            if default is None or default is False or default == "" or default == argparse.SUPPRESS:
                continue
            assert f"(default: {default})" in text or "default" in action.help, f"pgpo {name} {flag}: default hidden"


def test_defaults_appear_in_help_output(capsys):
    with pytest.raises(SystemExit) as e:
        main(["score", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 10000)" in out and "bootstrap seed (default: 0)" in out and "(default: pgpo)" in out
    assert "(default: None)" not in out


def test_version_prints_package_version_and_commit(capsys):
    import re

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"pgpo \d+\.\d+\.\d+\S* \(commit ([0-9a-f]{40}(\+dirty)?|unknown)\)\n", out), out


@pytest.mark.parametrize("argv", [
    ["train", "--method", "grpo", "--out", "{tmp}/r", "--set", "model.path=/nope"],
    ["evaluate", "--checkpoint", "/nope", "--out", "{tmp}/e"],
    ["warm-start", "--model", "/nope", "--data", "{tmp}", "--out", "{tmp}/w"],
    ["dependency-report", "--checkpoint", "/nope", "--data", "{tmp}", "--out", "{tmp}/d"],
    ["probe", "--checkpoint", "/nope", "--data", "{tmp}", "--out", "{tmp}/p.json"],
    ["probe", "--checkpoint", "./nope", "--data", "{tmp}", "--out", "{tmp}/p.json"],
])
def test_missing_checkpoint_is_one_line_naming_it(capsys, tmp_path, argv):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"pgpo {argv[0]}: error:" in err and "nope: no such directory" in err
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # failed before writing anything


def test_checkpoint_argument_local_paths_and_hub_ids(tmp_path):
    from pgpo.cli import check_checkpoint
    from pgpo.config.schema import ConfigError

    check_checkpoint("Qwen/Qwen2.5-VL-7B-Instruct")  # a hub id passes through (loaded from the cache or hub)
    (tmp_path / "model").mkdir()
    with pytest.raises(ConfigError, match="no config.json there"):
        check_checkpoint(str(tmp_path / "model"))
    (tmp_path / "model" / "config.json").write_text("{}")
    check_checkpoint(str(tmp_path / "model"))
    (tmp_path / "weights.bin").write_text("")
    with pytest.raises(ConfigError, match="a file, not a directory"):
        check_checkpoint(str(tmp_path / "weights.bin"))
    for path in ("./runs/x", "~/x", "runs/tiny/x/final", "nope"):  # path-looking or not org/name: local only
        with pytest.raises(ConfigError, match="no such directory"):
            check_checkpoint(path)
    with pytest.raises(ConfigError, match=r"config.json\)$"):
        check_checkpoint("Qwen/Qwen2.5-VL-7B-Instruct", hub=False)
