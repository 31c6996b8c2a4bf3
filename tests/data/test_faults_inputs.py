"""Fault matrix, inputs: every bad input is named (file, row, field) before any model loads, and concurrent
writers of one MLflow store take turns."""

import json
import shutil
import subprocess
import sys

import pytest
from cli_argv import train_argv

from pgpo.cli import main
from pgpo.training import run as train_module


@pytest.fixture
def no_model_load(monkeypatch):
    """Any attempt to build the trainer (load the model) fails the test: errors must come before it."""

    def forbidden(*_, **__):
        raise AssertionError("the model was loaded before the bad input was reported")

    monkeypatch.setattr(train_module, "build_trainer", forbidden)


def data_copy(tiny_data, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(tiny_data, dst)
    return dst


def rows_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("corrupt, message", [
    ("latin1", "train.jsonl:3: not UTF-8 (byte 0xe9 at column"),
    ("duplicate_id", "train.jsonl:5: field 'id': 'train-000001' already used on row 2"),
    ("blank_question", "train.jsonl:4: field 'question' is missing, empty or only whitespace"),
    ("list_answer", "train.jsonl:6: field 'answer' must be a JSON string, not list ([\"3\"]); write it quoted"),
    ("number_answer", "train.jsonl:6: field 'answer' must be a JSON string, not int (3); write it quoted"),
])
def test_bad_training_data_is_named_before_the_model_loads(corrupt, message, tiny_dir, tiny_data, tmp_path,
                                                           capsys, no_model_load):
    data = data_copy(tiny_data, tmp_path)
    split = data / "train.jsonl"
    if corrupt == "latin1":
        lines = split.read_bytes().splitlines(keepends=True)
        lines[2] = lines[2].replace(b'"question": "', "\"question\": \"caf\u00e9 ".encode("latin-1"), 1)
        split.write_bytes(b"".join(lines))
    else:
        rows = rows_of(split)
        if corrupt == "duplicate_id":
            rows[4]["id"] = rows[1]["id"]
        elif corrupt == "list_answer":
            rows[5]["answer"] = ["3"]
        elif corrupt == "number_answer":
            rows[5]["answer"] = 3
        else:
            rows[3]["question"] = " \t "
        write_rows(split, rows)
    assert main(train_argv(tiny_dir, data, tmp_path / "run")) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("override, message", [
    ("optim.lr=-0.001", "optim.lr must be > 0, got -0.001"),
    ("save_steps=0", "save_steps must be > 0, got 0"),
    ("optim.max_grad_norm=-1", "optim.max_grad_norm must be >= 0"),
    ("micro_batch=0", "micro_batch must be > 0"),
    # issue 23: values that passed every check and failed (or diverged) after the model loaded
    ("optim.lr=.inf", "tiny.yaml.optim.lr: expected a finite number, got inf"),
    ("rollout.temperature=nan", "rollout.temperature: expected a finite number, got nan"),
    ("max_steps=2.5", "max_steps: expected a whole number, got 2.5"),
    ("optim.adam_beta1=1.5", "optim.adam_beta1 and adam_beta2 must be in [0, 1) and adam_epsilon > 0"),
    ("optim.adam_epsilon=0", "adam_epsilon > 0, got 0.9, 0.999, 0.0"),
    ("optim.optimizer=adamw_torch_fusd", ("optim.optimizer 'adamw_torch_fusd' is not a Trainer optimizer; did "
                                          "you mean 'adamw_torch_fused'?")),
    ("optim.scheduler=cosin", "optim.scheduler 'cosin' is not a Trainer scheduler; did you mean 'cosine'?"),
])
def test_bad_recipe_values_are_refused(override, message, tiny_dir, tiny_data, tmp_path, capsys, no_model_load):
    assert main(train_argv(tiny_dir, tiny_data, tmp_path / "run", override)) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("", "recipe.yaml: empty; a recipe or method file sets at least one field"),  # once: the code's defaults
    ("max_steps: 2\noptim: {lr: 1.0e-4}\nmax_steps: 3\n",
     "recipe.yaml:3:1: invalid YAML (key 'max_steps' given twice (lines 1 and 3))"),
    ("optim:\n  lr: 1.0e-4\n  lr: 2.0e-4\n", "key 'lr' given twice (lines 2 and 3)"),
])
def test_an_empty_or_ambiguous_recipe_is_refused(text, message, tiny_dir, tiny_data, tmp_path, capsys,
                                                 no_model_load):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    argv = ["train", "--method", "grpo", "--config", str(recipe), "--out", str(tmp_path / "run"), "--set",
            f"model.path={tiny_dir}", "--set", f"data.train={tiny_data / 'train.jsonl'}"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("path, message", [
    ("results/tiny/model/nope", "model.path: results/tiny/model/nope: no such directory"),
    ("{tmp}", "has no config.json (not a Hugging Face model directory)"),
])
def test_a_missing_model_directory_is_named(path, message, tiny_data, tmp_path, capsys, no_model_load):
    path = path.format(tmp=tmp_path)
    assert main(train_argv(path, tiny_data, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert message in err and "Repo id must be" not in err


def evaluate_edited_suite(tiny_dir, tiny_data, tmp_path, monkeypatch, edit):
    """`pgpo evaluate` on a copy of the bars suite whose rows `edit` changed (MANIFEST rewritten); loading the model
    fails the test: the errors must come before it. Returns (exit code, the edited rows)."""
    from pgpo.data.datasets import write_manifest
    from pgpo.evaluation import generate

    def forbidden(*_, **__):
        raise AssertionError("the model was loaded before the bad questions were reported")

    monkeypatch.setattr(generate, "build_model", forbidden)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = data_copy(tiny_data, tmp_path)
    suite = data / "suite_bars.jsonl"
    rows = rows_of(suite)
    edit(rows)
    write_rows(suite, rows)
    write_manifest(data, json.loads((data / "MANIFEST.json").read_text())["config"])
    rc = main(["evaluate", "--checkpoint", str(tiny_dir), "--data", str(data), "--benchmarks", "tiny_bars",
               "--out", str(tmp_path / "eval")])
    return rc, rows


def test_duplicate_evaluation_ids_stop_before_the_model_loads(tiny_dir, tiny_data, tmp_path, capsys, monkeypatch):
    def edit(rows):
        rows[2]["id"] = rows[0]["id"]

    rc, rows = evaluate_edited_suite(tiny_dir, tiny_data, tmp_path, monkeypatch, edit)
    assert rc == 2
    assert f"'{rows[0]['id']}' already used on row 1" in capsys.readouterr().err


def test_an_evaluation_question_longer_than_the_context_stops_before_the_model_loads(tiny_dir, tiny_data, tmp_path,
                                                                                   capsys, monkeypatch):
    """Issue 23: a question of 100,000 characters (~25,000 tokens against the tiny model's 2,048) grew the backend to
    17.8 GB until the kernel killed it. Now every such row is named and counted before any model loads."""
    def edit(rows):
        rows[1]["question"] = "how many bars " * 7200  # 100,800 characters
        rows[3]["question"] = "bars " * 2000  # ~2,000 tokens: over 2,048 with the image, template and 32 new tokens

    rc, rows = evaluate_edited_suite(tiny_dir, tiny_data, tmp_path, monkeypatch, edit)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "tiny_bars: 2 question(s) do not fit the model's context of 2048 tokens with max_new_tokens 32" in err
    assert f"'{rows[1]['id']}' (" in err and f"'{rows[3]['id']}' (" in err and f"'{rows[0]['id']}'" not in err
    assert not (tmp_path / "eval" / "samples").exists()


def test_the_prompt_bound_counts_what_the_processor_gives(tiny_dir, tiny_data):
    """The bound is an upper bound of the processor's own count, and tight: a few template tokens of margin."""
    from prompt_rows import processed_prompts

    from pgpo.evaluation.prompt_budget import TEMPLATE_TOKENS, check_prompt_budget

    processor, rows = processed_prompts(tiny_dir, tiny_data)
    for _, doc, ids in rows:
        n = ids.shape[1]
        bound = check_prompt_budget("t", [doc], processor.tokenizer, {}, 2048, 32)
        assert n <= bound <= n + TEMPLATE_TOKENS, (n, bound)


def test_two_trackers_on_a_fresh_store_take_turns(tmp_path):
    """Two `pgpo track` processes started together on a new store: both succeed, one parent run, no raw
    sqlite error from MLflow's schema creation."""
    root = tmp_path / "results" / "quick"
    code = ("import sys; from pgpo.tracking.ingest import ingest; "
            "print(ingest(sys.argv[1], 'table1', {}, {}, ['tiny_bars'])['parent_run_id'])")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert outs[0][0].strip() == outs[1][0].strip()  # the same parent run, upserted, not duplicated


def test_repeated_ids_after_process_docs_are_named():
    """Hub benchmarks get their ids from process_docs: the check runs on the built task, before the model."""
    from types import SimpleNamespace

    from pgpo.data.datasets import DataError
    from pgpo.evaluation.benchmarks import all_benchmarks
    from pgpo.evaluation.generate import check_unique_ids

    bench = all_benchmarks()["mathvision"]
    check_unique_ids(bench, SimpleNamespace(eval_docs=[{"id": "1"}, {"id": "2"}]))
    with pytest.raises(DataError, match=r"mathvision: 1 repeated question id\(s\): '7' \(documents 0 and 2\)"):
        check_unique_ids(bench, SimpleNamespace(eval_docs=[{"id": "7"}, {"id": "8"}, {"id": "7"}]))
