"""lmms-eval's own command line on the pgpo_ tasks (`lmms-eval eval --include_path pgpo/lmms_tasks ...`), the path
of an lmms-eval user next to `pgpo evaluate`: the tiny tasks find their suite themselves, build the same documents
and prompts as `pgpo evaluate`, fail with a non-zero exit naming the path and the variable when the suite is
missing, and `lmms-eval models` lists pgpo_vlm. The paper tasks' process_docs, run by lmms-eval's own loader on
real published rows, give the canonical documents."""

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from pgpo.evaluation import benchmarks as bm
from pgpo.evaluation.docs import TINY_DATA_ENV, doc_to_messages, doc_to_text
from pgpo.rewards.scoring import grade

ROOT = Path(__file__).resolve().parents[2]
LMMS_EVAL = str(Path(sys.executable).with_name("lmms-eval"))  # the console script of this environment
CANONICAL_KEYS = {"id", "question", "answer", "choices", "show_choices", "images"}


def _env(tmp_path: Path, **extra) -> dict:
    """This checkout's code first (the editable install may point at another one), offline, a private datasets
    cache, and the tiny-data variable only where a test sets it."""
    env = {k: v for k, v in os.environ.items() if k != TINY_DATA_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", LMMS_EVAL_DATASETS_CACHE=str(tmp_path / "datasets"),
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="2", **extra)
    return env


def _run(argv: list[str], tmp_path: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, env=_env(tmp_path, **env), capture_output=True, text=True, timeout=600,
                          check=False)


def _eval_argv(tiny_dir, out: Path) -> list[str]:
    return [LMMS_EVAL, "eval", "--include_path", "pgpo/lmms_tasks", "--tasks", "pgpo_tiny_count",
            "--model", "pgpo_vlm", "--model_args", f"pretrained={tiny_dir}", "--limit", "2",
            "--gen_kwargs", "max_new_tokens=4", "--output_path", str(out), "--log_samples"]


@pytest.mark.slow
def test_lmms_eval_cli_runs_a_tiny_task_from_the_repository_root(tiny_dir, tiny_data, tmp_path):
    out = tmp_path / "out"
    proc = _run(_eval_argv(tiny_dir, out), tmp_path, **{TINY_DATA_ENV: str(tiny_data)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Error during evaluation" not in proc.stdout + proc.stderr  # lmms-eval logs a caught failure, exits 0
    [results_file] = out.rglob("*_results.json")
    results = json.loads(results_file.read_text())
    score = results["results"]["pgpo_tiny_count"]["avg_at_k,k_samples"]
    assert isinstance(score, float) and 0.0 <= score <= 1.0
    assert results["n-samples"]["pgpo_tiny_count"]["effective"] == 2
    assert results["versions"]["pgpo_tiny_count"] == 2
    [samples_file] = out.rglob("*_samples_pgpo_tiny_count.jsonl")
    samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
    suite = [json.loads(line) for line in (tiny_data / "suite_count.jsonl").read_text().splitlines()][:2]
    assert [s["target"] for s in samples] == [r["answer"] for r in suite]
    assert [s["input_media"] for s in samples] == [[str((tiny_data / r["image"]).resolve())] for r in suite]
    assert all(s["input"] == doc_to_text({"question": r["question"], "choices": r["choices"]})
               for s, r in zip(samples, suite))
    assert [len(s["filtered_resps"]) for s in samples] == [8, 8]  # the YAML's k
    # lmms-eval's number is our grade of its responses
    means = [sum(grade(t, s["target"]) for t in s["filtered_resps"]) / 8 for s in samples]
    assert score == pytest.approx(sum(means) / 2)


@pytest.mark.slow
def test_lmms_eval_cli_fails_loudly_naming_the_path_and_variable_when_the_suite_is_missing(tiny_dir, tmp_path):
    missing = tmp_path / "no-data"
    out = tmp_path / "out"
    proc = _run(_eval_argv(tiny_dir, out), tmp_path, **{TINY_DATA_ENV: str(missing)})
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"pgpo_tiny_count: {missing / 'suite_count.jsonl'}: missing")
    assert f"{TINY_DATA_ENV}='{missing}'" in last and "pgpo make-data" in last
    assert not list(out.rglob("*_results.json"))


def test_lmms_eval_models_lists_pgpo_vlm_and_any_import_order_registers_it(tmp_path):
    listing = _run([LMMS_EVAL, "models"], tmp_path)
    assert listing.returncode == 0, listing.stderr[-2000:]
    assert [line.split() for line in listing.stdout.splitlines() if line.startswith("pgpo_vlm ")] == [
        ["pgpo_vlm", "simple"]]
    # importing the model module before lmms_eval.models used to leave pgpo_vlm unregistered (half-imported module)
    code = ("import pgpo.evaluation.lmms_model\nfrom lmms_eval.models import get_model\n"
            "print(get_model('pgpo_vlm').__name__)")
    proc = _run([sys.executable, "-c", code], tmp_path)
    assert proc.returncode == 0 and proc.stdout.split()[-1] == "PGPOVisionLanguageModel", proc.stderr[-2000:]


def test_cli_and_pgpo_evaluate_build_the_same_documents_and_prompts(tiny_data, tmp_path, monkeypatch):
    """lmms-eval's task loading (what `lmms-eval eval` does) vs `pgpo evaluate`'s validated input file."""
    from lmms_eval.tasks import TaskManager, get_task_dict

    from pgpo.evaluation.config import EvalConfig
    from pgpo.evaluation.generate import gen_kwargs, make_task

    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "datasets"))
    manager = TaskManager("WARNING", include_path=str(bm.TASKS_DIR), include_defaults=False, model_name="pgpo_vlm")
    for name in ("tiny_count", "tiny_bars"):  # a free-form suite, then a multiple-choice one
        bench = bm.all_benchmarks()[name]
        monkeypatch.setenv(TINY_DATA_ENV, str(tiny_data))
        cli_task = get_task_dict([bench.task], manager, "simple")[bench.task]
        # `pgpo evaluate` reads only the file it validated and wrote, never the variable
        monkeypatch.delenv(TINY_DATA_ENV)
        data_file, _ = bm.tiny_inputs(bench, tiny_data, tmp_path / "run")
        ours = make_task(bench, bm.task_override(bench, 8, gen_kwargs(EvalConfig()), data_file), chat=False)
        cli_docs, our_docs = list(cli_task.eval_docs), list(ours.eval_docs)
        assert set(cli_docs[0]) == CANONICAL_KEYS and len(cli_docs) == 4
        assert cli_docs == our_docs
        assert doc_to_messages(cli_docs[1]) == doc_to_messages(our_docs[1])  # text and the decoded images
        for task in (cli_task, ours):
            task.build_all_requests(limit=2)
        assert [r.args[0] for r in cli_task.instances] == [r.args[0] for r in ours.instances]
    assert any(cli_docs[0]["choices"]) and cli_docs[0]["show_choices"] is True


def test_a_bad_suite_row_stops_the_tiny_task_with_its_file_and_row(tiny_data, tmp_path, monkeypatch):
    import shutil

    from pgpo.data.datasets import write_manifest
    from pgpo.evaluation.docs import tiny_suite_docs

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    lines = (data / "suite_digit.jsonl").read_text().splitlines()
    row = json.loads(lines[1])
    row["answer"] = " "
    (data / "suite_digit.jsonl").write_text("\n".join([lines[0], json.dumps(row), *lines[2:]]) + "\n")
    monkeypatch.setenv(TINY_DATA_ENV, str(data))
    with pytest.raises(SystemExit, match=r"MANIFEST.json was written"):  # the folder's MANIFEST catches the edit
        tiny_suite_docs("digit")(None)
    write_manifest(data, {"note": "edited"})
    with pytest.raises(SystemExit, match=rf"suite_digit.jsonl:2: field 'answer' is missing, empty .*"
                                         rf"\({TINY_DATA_ENV}="):
        tiny_suite_docs("digit")(None)


@pytest.mark.parametrize("name", ["geo3k", "mmk12", "mathverse", "mathverse_v", "dynamath", "mathvision",
                                  "logicvista", "mmmu_pro"])
def test_paper_tasks_give_canonical_documents_through_lmms_evals_loader(name, tmp_path):
    """Each paper YAML as lmms-eval loads it (its process_docs through utils.py, its test split), on the real
    published rows of tests/fixtures/realdata saved as the hub dataset's columns."""
    from lmms_eval.api.task import ConfigurableTask
    from lmms_eval.utils import load_yaml_config
    from realdata_rows import BENCHMARKS, _ds

    rows_fn, direct, image_columns = BENCHMARKS[name]
    bench = bm.all_benchmarks()[name]
    config = load_yaml_config(str(bench.yaml_path), mode="full")
    local = tmp_path / name
    datasets.DatasetDict({config["test_split"]: _ds(rows_fn(), image_columns)}).save_to_disk(str(local))
    task = ConfigurableTask(config={**config, "dataset_path": str(local), "dataset_kwargs": {"load_from_disk": True}})
    docs = list(task.eval_docs)
    expected = direct(_ds(rows_fn(), image_columns))
    assert docs and len(docs) == len(expected)
    assert all(set(d) == CANONICAL_KEYS for d in docs)
    assert [doc_to_text(d) for d in docs] == [doc_to_text(d) for d in expected]
    assert [(d["id"], d["answer"], list(d["choices"])) for d in docs] == [
        (d["id"], d["answer"], list(d["choices"])) for d in expected]
