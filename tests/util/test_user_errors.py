"""Every user error is one line naming the file (or field, row, variable) and the fix (issue 23, item 6).

The test walks the error classes: every UserError subclass the package defines must have a scenario below that
raises it through the real code path (the CLI where one reaches it before any model loads), and the line the CLI
prints for it is checked: `pgpo <command>: error: ` + the path + the fix, no traceback; an error about many rows
may list them after that line, indented. A new error class without a scenario fails
`test_every_user_error_class_has_a_scenario`. The OS errors a user causes (a read-only --out, a folder given for
a file, a full disk) are printed the same way."""

import importlib
import json
import pkgutil
import shutil
import subprocess
import sys

import pytest
from cli_argv import train_argv

import pgpo
from pgpo.cli import build_parser, error_message
from pgpo.training import run as train_module
from pgpo.util.errors import UserError

HOLD = ("import sys, time\nfrom pgpo.util.run_lock import lock_run_dir\nlock_run_dir(sys.argv[1], 'a test holder')\n"
        "print('held', flush=True)\ntime.sleep(600)\n")


def user_error_classes() -> dict[str, type]:
    for module in pkgutil.walk_packages(pgpo.__path__, "pgpo."):
        importlib.import_module(module.name)
    seen, todo = set(), [UserError]
    while todo:
        cls = todo.pop()
        seen.add(cls)
        todo += cls.__subclasses__()
    return {c.__name__: c for c in seen if c.__module__.startswith("pgpo.")}


def cli(argv):
    """The command as `pgpo` runs it, without main's handler (the test formats the error with main's function)."""
    args = build_parser().parse_args(argv)
    return lambda: args.fn(args)


def samples_run(tmp_path, rows=None, meta_text=None, requested=("tiny_count",)):
    """An evaluation run directory with one samples file (k=2) and its meta, as `pgpo evaluate` writes them."""
    from pgpo.util.provenance import sha256_file

    run = tmp_path / "eval"
    (run / "samples").mkdir(parents=True)
    path = run / "samples" / "tiny_count.jsonl"
    rows = rows or [{"id": "q1", "answer": "3", "responses": ["\\boxed{3}", "\\boxed{4}"]},
                    {"id": "q2", "answer": "5", "responses": ["\\boxed{5}", "\\boxed{5}"]}]
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))
    meta = {"benchmark": "tiny_count", "checkpoint": "tiny", "checkpoint_hash": "h", "sampling": {"samples": 2},
            "samples_sha256": sha256_file(path), "requested_benchmarks": list(requested)}
    (run / "samples" / "tiny_count.meta.json").write_text(meta_text if meta_text is not None else json.dumps(meta))
    return run


# ---------------------------------------------------------------------------------------------------- scenarios
# name of the class -> (tmp_path, fixtures) -> (command, callable that raises, the class raised, expected substrings)
def scenario_user_error(tmp_path, tiny_dir, tiny_data, **_):
    out = tmp_path / "a-file"
    out.write_text("not a folder\n")
    return "train", cli(train_argv(tiny_dir, tiny_data, out)), UserError, [
        str(out), "a file, not a folder", "give another --out"]


def scenario_run_locked(tmp_path, tiny_dir, tiny_data, cleanup, **_):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    cleanup.append(proc)
    assert proc.stdout.readline().strip() == "held"
    return "train", cli(train_argv(tiny_dir, tiny_data, out)), None, [str(out), f"in use by pid {proc.pid}",
                                                                       "use another --out"]


def scenario_data_error(tmp_path, **_):
    run = samples_run(tmp_path, rows=[{"id": "q1", "answer": "3", "responses": ["\\boxed{3}"]}, "{cut\n"])
    path = run / "samples" / "tiny_count.jsonl"
    return "score", cli(["score", "--run", str(run)]), None, [
        f"{path}: 2 bad row(s); regenerate the samples", f"\n  {path}:1: field 'responses' has 1 samples",
        f"\n  {path}:2: not valid JSON"]


def scenario_corrupt_file(tmp_path, **_):
    run = samples_run(tmp_path, meta_text='{"benchmark": "tiny_count", "checkpo')
    meta = run / "samples" / "tiny_count.meta.json"
    return "score", cli(["score", "--run", str(run)]), None, [
        f"{meta}: not JSON (Unterminated string", "`pgpo evaluate`: samples are written with it writes it again"]


def scenario_config_error(tmp_path, tiny_dir, tiny_data, **_):
    return "train", cli(train_argv(tiny_dir, tiny_data, tmp_path / "run", "optim.lr=.inf")), None, [
        "tiny.yaml.optim.lr: expected a finite number, got inf"]


def scenario_run_conflict(tmp_path, tiny_dir, tiny_data, **_):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run_config.json").write_text(json.dumps({"method": {"name": "grpo"}, "config": {"max_steps": 7},
                                                     "config_hash": "0" * 16}))
    return "train", cli(train_argv(tiny_dir, tiny_data, out)), None, [
        f"{out / 'run_config.json'}: {out} holds a run of another recipe/method; use another --out, or --fresh",
        "field(s) differ (recorded -> this command):\n  "]


def scenario_judge_configured(tmp_path, tiny_dir, tiny_data, monkeypatch, **_):
    monkeypatch.setenv("OPENAI_API_KEY", "")
    argv = ["evaluate", "--checkpoint", str(tiny_dir), "--data", str(tiny_data), "--benchmarks", "tiny_bars",
            "--samples", "2", "--out", str(tmp_path / "eval"), "--set", "limit=2"]
    return "evaluate", cli(argv), None, ["['OPENAI_API_KEY']", "unset them (e.g. `env -u OPENAI_API_KEY"]


def scenario_pairing_error(tmp_path, **_):
    from pgpo.records.stages import write_eval_result
    from pgpo.results.paired_tables import question_view

    dirs = {}
    for label, ids in (("pgpo", ["q1", "q2"]), ("dapo", ["q2", "q1"])):
        dirs[label] = tmp_path / label
        dirs[label].mkdir()
        write_eval_result(dirs[label], {"benchmark": "tiny_count", "k": 1, "per_question": [
            {"id": i, "mean": 1.0, "samples": [1.0]} for i in ids]})
    return "table", lambda: question_view({k: [str(v)] for k, v in dirs.items()}, {"pgpo": [0], "dapo": [0]},
                                          {"pgpo": "dapo"}, ["tiny_count"], []), None, [
        f"{dirs['pgpo'] / 'tiny_count.json'} and {dirs['dapo'] / 'tiny_count.json'} hold different questions",
        "evaluate both with the same benchmark files"]


def scenario_processor_error(tmp_path, tiny_dir, **_):
    from pgpo.models.processor import load_processor

    model = tmp_path / "model"
    shutil.copytree(tiny_dir, model)
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = model / name
        if path.exists():
            raw = json.loads(path.read_text())
            (raw.get("image_processor") or raw)["image_processor_type"] = "NoSuchImageProcessor"
            path.write_text(json.dumps(raw))
    return "evaluate", lambda: load_processor(model), None, [
        f"{model}/processor_config.json", "'NoSuchImageProcessor'", "Fix: set it to the class"]


def scenario_disk_full(tmp_path, tiny_data, cleanup, **_):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], check=False).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    cleanup.append(disk)
    out = str(disk / "data")
    return "make-data", cli(["make-data", "--out", out, "--train-per-task", "40"]), (OSError, out), [
        f"no space left on device: the disk mounted at {disk}"]


SCENARIOS = {"UserError": scenario_user_error, "RunLocked": scenario_run_locked, "DataError": scenario_data_error,
             "CorruptFile": scenario_corrupt_file, "ConfigError": scenario_config_error,
             "RunConflict": scenario_run_conflict, "JudgeConfigured": scenario_judge_configured,
             "PairingError": scenario_pairing_error, "ProcessorError": scenario_processor_error,
             "DiskFull": scenario_disk_full}


def test_every_user_error_class_has_a_scenario():
    assert set(user_error_classes()) == set(SCENARIOS)


@pytest.fixture
def no_model_load(monkeypatch):
    def forbidden(*_, **__):
        raise AssertionError("the model was loaded before the error was reported")

    monkeypatch.setattr(train_module, "build_trainer", forbidden)


@pytest.fixture
def cleanup():
    items = []
    yield items
    for item in items:
        if isinstance(item, subprocess.Popen):
            item.kill()
            item.wait()
        else:
            subprocess.run(["umount", "-l", str(item)], check=False)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_user_error_is_one_line_naming_the_file_and_the_fix(name, tmp_path, tiny_dir, tiny_data, monkeypatch,
                                                                 cleanup, no_model_load):
    command, action, raised, expected = SCENARIOS[name](tmp_path=tmp_path, tiny_dir=tiny_dir, tiny_data=tiny_data,
                                                        monkeypatch=monkeypatch, cleanup=cleanup)
    raised, out = raised if isinstance(raised, tuple) else (raised, None)
    raised = raised or user_error_classes()[name]
    with pytest.raises(Exception) as info:
        action()
    assert type(info.value) is raised, repr(info.value)
    text = error_message(command, info.value, out)
    assert text is not None, f"{info.value!r} would be printed with a traceback"
    first, *rest = text.split("\n")
    assert first.startswith(f"pgpo {command}: error: ") and "Traceback" not in text
    assert all(line.startswith("  ") for line in rest), text  # only an indented list of rows follows
    for part in expected:
        assert part in text, (part, text)


def test_main_prints_the_line_and_exits_2(tmp_path, capsys):
    run = samples_run(tmp_path, meta_text="[1, 2")
    from pgpo.cli import main

    assert main(["score", "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pgpo score: error: {run / 'samples' / 'tiny_count.meta.json'}: not JSON") and \
        err.count("\n") == 1, err


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_a_read_only_out_is_refused_before_the_model_loads(command, read_only_dir, tiny_dir, tiny_data, capsys,
                                                           no_model_load):
    from pgpo.cli import main

    out = read_only_dir / "run"
    argv = (train_argv(tiny_dir, tiny_data, out) if command == "train" else
            ["evaluate", "--checkpoint", str(tiny_dir), "--data", str(tiny_data), "--benchmarks", "tiny_bars",
             "--samples", "2", "--out", str(out)])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pgpo {command}: error: {out}: not writable (") and \
        "make it writable, or give another --out" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("case", ["folder for a file", "file for a folder", "read-only file"])
def test_os_errors_on_user_paths_are_one_line(case, tmp_path, read_only_dir):
    """What the CLI prints for the OS errors a user's path causes (the rest keep their traceback: bugs)."""
    if case == "folder for a file":
        with pytest.raises(OSError) as info:
            tmp_path.write_text("x")
        fix = "a folder where a file is expected: give the file"
    elif case == "file for a folder":
        (tmp_path / "f").write_text("x")
        with pytest.raises(OSError) as info:
            (tmp_path / "f" / "sub").mkdir()
        fix = "a file where a folder is expected"
    else:
        with pytest.raises(OSError) as info:
            (read_only_dir / "existing.txt").write_text("new")
        fix = "make it writable, or give another path"
    text = error_message("score", info.value)
    assert text.startswith(f"pgpo score: error: {info.value.filename}: ") and fix in text and "\n" not in text
    assert error_message("score", OSError(5, "Input/output error", str(tmp_path))) is None  # a disk fault: traceback
    assert error_message("score", KeyError("x")) is None


@pytest.mark.parametrize("requested, warned", [(["tiny_count"], False), (["tiny_count", "tiny_bars", "tiny_digit"],
                                                                          True)])
def test_scoring_a_run_the_evaluation_did_not_finish_says_what_is_missing(requested, warned, tmp_path, capsys):
    """Issue 23: the suggested `pgpo score --run` of a killed evaluation wrote a summary over 3 of 8 suites without a
    word. The meta files record what the evaluation asked for; scoring says what has no samples."""
    from pgpo.evaluation.score import score_run

    run = samples_run(tmp_path, requested=requested)
    table = score_run(run, bootstrap_samples=10)
    assert list(table["benchmarks"]) == ["tiny_count"]
    err = capsys.readouterr().err
    assert ("the summary covers 1 of the 3 benchmarks the evaluation asked for; no finished samples of "
            "['tiny_bars', 'tiny_digit']" in err) == warned, err
    if not warned:
        assert "warning" not in err


def test_an_unwritable_home_is_named_before_the_model_loads(read_only_dir, tiny_dir, tiny_data, tmp_path, monkeypatch,
                                                           capsys):
    """Issue 23: with HOME read-only (a cluster node), lmms-eval died creating its datasets cache with a raw OSError
    inside tenacity's RetryError. Now: one line naming the folder and the variable that moves it."""
    from pgpo.cli import main
    from pgpo.evaluation import generate as generate_module
    from pgpo.evaluation.guard import check_cache_writable

    for name in ("HF_HOME", "HF_DATASETS_CACHE", "LMMS_EVAL_DATASETS_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(read_only_dir))
    monkeypatch.setattr(generate_module, "build_model", lambda *_: pytest.fail("the model loaded first"))
    argv = ["evaluate", "--checkpoint", str(tiny_dir), "--data", str(tiny_data), "--benchmarks", "tiny_bars",
            "--samples", "2", "--out", str(tmp_path / "eval"), "--set", "limit=2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pgpo evaluate: error: {read_only_dir}/.cache/huggingface/datasets: lmms-eval's datasets "
                          "cache is not writable") and "set LMMS_EVAL_DATASETS_CACHE (or HF_HOME)" in err, err
    assert err.count("\n") == 1
    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "cache"))  # the fix the message gives
    assert check_cache_writable() == tmp_path / "cache"


@pytest.mark.parametrize("where", ["model.safetensors", "config.json"])
def test_a_cut_model_file_is_named_before_it_loads(where, tiny_dir, tiny_data, tmp_path, capsys, no_model_load):
    """A cut weight file stopped training and evaluation inside safetensors with no path; now both name it."""
    from pgpo.cli import main

    model = tmp_path / "model"
    shutil.copytree(tiny_dir, model)
    data = (model / where).read_bytes()
    (model / where).write_bytes(data[:len(data) // 2])
    assert main(train_argv(model, tiny_data, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pgpo train: error: {model / where}: ") and err.count("\n") == 1, err
    assert "restore or copy the model again" in err
    from pgpo.util.integrity import model_dir_problem

    assert model_dir_problem(tiny_dir) is None


def test_read_json_names_the_file_and_its_writer(tmp_path):
    from pgpo.util.jsonfile import CorruptFile, read_json

    path = tmp_path / "x.json"
    for text, message in (('{"a": ', "not JSON (Expecting value, line 1 column 7)"),
                          ("[1]", "expected a JSON dict, got list"),
                          (b"{\"a\": \"\x80\"}", "not JSON (not UTF-8)")):
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(CorruptFile) as info:
            read_json(path, "`pgpo x`", what="thing")
        assert str(info.value).startswith(f"{path}: {message}") and "`pgpo x` writes it again" in str(info.value)
    with pytest.raises(CorruptFile, match="a folder where thing is expected"):
        read_json(tmp_path, "`pgpo x`", what="thing")
    with pytest.raises(FileNotFoundError, match=r"missing thing \(`pgpo x` writes it\)"):
        read_json(tmp_path / "none.json", "`pgpo x`", what="thing")
