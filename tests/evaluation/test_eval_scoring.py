"""Scoring logged samples (avg@k, SE, bootstrap CI, failure counts), evaluation configs and the judge guard."""

import json
import math

import numpy as np
import pytest

from pgpo.config.schema import ConfigError
from pgpo.data.datasets import DataError
from pgpo.evaluation.config import load_eval_config
from pgpo.evaluation.docs import FAILED_PREFIX
from pgpo.evaluation.guard import JudgeConfigured, check_environment, check_metrics
from pgpo.evaluation.score import bootstrap_ci, score_benchmark, score_run


def write_run(run, rows, k, name="bench"):
    """A samples file + meta as `pgpo evaluate` writes them (hand-made, known answers)."""
    samples = run / "samples" / f"{name}.jsonl"
    samples.parent.mkdir(parents=True, exist_ok=True)
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    meta = {"benchmark": name, "sampling": {"samples": k}, "checkpoint": "ckpt", "checkpoint_hash": "abc",
            "samples_sha256": __import__("hashlib").sha256(samples.read_bytes()).hexdigest(),
            "lmms_eval": {"avg_at_k": None}}
    samples.with_suffix(".meta.json").write_text(json.dumps(meta))
    return samples


def row(i, answer, responses, choices=()):
    return {"doc_id": i, "id": f"q{i}", "question": "?", "answer": answer, "choices": list(choices),
            "responses": responses}


def test_avg_at_k_is_the_mean_of_per_question_means(tmp_path):
    rows = [row(0, "4", ["\\boxed{4}", "\\boxed{4}", "\\boxed{5}", "\\boxed{4}"]),  # 0.75
            row(1, "B", ["\\boxed{B}", "\\boxed{A}", "\\boxed{A}", "no box"], ["x", "y"]),  # 0.25
            row(2, "1", ["\\boxed{2}"] * 4)]  # 0.0
    r = score_benchmark(write_run(tmp_path, rows, 4), bootstrap_samples=2000)
    assert [q["mean"] for q in r["per_question"]] == [0.75, 0.25, 0.0]
    # every sample's score, in sample order (the power planner's sampling variance)
    assert [q["samples"] for q in r["per_question"]] == [[1, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert r["avg_at_k"] == pytest.approx(1.0 / 3)
    assert (r["k"], r["n_questions"], r["n_samples"]) == (4, 3, 12)
    assert r["standard_error"] == pytest.approx(np.std([0.75, 0.25, 0.0], ddof=1) / math.sqrt(3))
    lo, hi = r["ci95_bootstrap"]
    assert 0.0 <= lo < r["avg_at_k"] < hi <= 0.75
    assert r["counts"] == {"ok": 11, "no_answer": 1, "timeout": 0, "error": 0, "generation_failed": 0}
    assert r["samples_changed_since_generation"] is False and r["checkpoint_hash"] == "abc"


def test_failed_generations_are_counted_listed_and_score_zero(tmp_path):
    rows = [row(0, "4", ["\\boxed{4}", FAILED_PREFIX + "OSError: image missing"]), row(1, "4", ["\\boxed{4}"] * 2)]
    r = score_benchmark(write_run(tmp_path, rows, 2))
    assert r["n_failed"] == 1 and r["failed_question_ids"] == ["q0"]
    assert r["per_question"][0]["samples"] == [1.0, 0.0]  # the failed generation's 0 is in its place
    assert r["avg_at_k"] == pytest.approx(0.75)


def test_invalid_gold_is_listed_not_scored(tmp_path):
    rows = [row(0, "seventeen", ["\\boxed{A}", "no box"], ["1", "2"]),
            row(1, "eighteen", ["no box", FAILED_PREFIX + "x"], ["1", "2"]),  # found without any boxed answer
            row(2, "A", ["\\boxed{A}", FAILED_PREFIX + "OSError"], ["1", "2"])]
    r = score_benchmark(write_run(tmp_path, rows, 2))
    assert r["n_questions"] == 1 and r["avg_at_k"] == 0.5
    assert [i["id"] for i in r["invalid_gold"]] == ["q0", "q1"] and "names none of" in r["invalid_gold"][0]["problem"]
    assert r["failed_question_ids"] == ["q2"]  # aligned with the question, not shifted by the invalid ones
    assert r["counts"] == {"ok": 1, "no_answer": 0, "timeout": 0, "error": 0, "generation_failed": 1}


@pytest.mark.parametrize("bad, message", [
    ({"responses": ["\\boxed{4}"] * 3}, r"bench.jsonl:2: field 'responses' has 3 samples, expected k=2"),
    ({"responses": ["\\boxed{4}", None]}, r"bench.jsonl:2: field 'responses' must be a list of strings"),
    ({"choices": "AB"}, r"bench.jsonl:2: field 'choices' must be a list of strings"),
    ({"id": "q0"}, r"bench.jsonl:2: field 'id' 'q0' repeats row 1"),
])
def test_bad_sample_rows_name_file_row_and_field(tmp_path, bad, message):
    path = write_run(tmp_path, [row(0, "4", ["\\boxed{4}"] * 2), {**row(1, "4", ["\\boxed{4}"] * 2), **bad}], 2)
    with pytest.raises(DataError, match=message):
        score_benchmark(path)


def test_score_run_writes_fixed_paths_and_a_summary(tmp_path):
    write_run(tmp_path, [row(0, "4", ["\\boxed{4}"])], 1, "a")
    write_run(tmp_path, [row(0, "4", ["\\boxed{5}"])], 1, "b")
    table = score_run(tmp_path, bootstrap_samples=200)
    assert json.loads((tmp_path / "a.json").read_text())["avg_at_k"] == 1.0
    assert table["mean_avg_at_k"] == 0.5 and set(table["benchmarks"]) == {"a", "b"}
    with pytest.raises(DataError, match="run `pgpo evaluate` first"):
        score_run(tmp_path / "empty")


def test_rescoring_detects_edited_samples(tmp_path):
    path = write_run(tmp_path, [row(0, "4", ["\\boxed{4}"])], 1)
    path.write_text(path.read_text().replace("boxed{4}", "boxed{5}"))
    r = score_benchmark(path)
    assert r["avg_at_k"] == 0.0 and r["samples_changed_since_generation"] is True


def test_bootstrap_interval():
    assert bootstrap_ci(np.full(10, 0.5), 500, 0) == (0.5, 0.5)
    values = np.random.default_rng(1).random(200)
    lo, hi = bootstrap_ci(values, 4000, 0)
    se = values.std(ddof=1) / math.sqrt(len(values))
    assert lo < values.mean() < hi and hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert bootstrap_ci(values, 4000, 0) == (lo, hi)  # seeded


def test_profiles_load_and_bad_values_are_named():
    tiny = load_eval_config("workflows/config/eval/tiny.yaml")
    assert (tiny.sampling.samples, tiny.sampling.temperature, tiny.sampling.top_p) == (8, 1.0, 1.0)
    assert tiny.backend.name == "pgpo_vlm" and tiny.sampling.max_new_tokens >= 24  # >= the training budget
    paper = load_eval_config("workflows/config/eval/paper.yaml")
    assert (paper.sampling.samples, paper.sampling.max_new_tokens, paper.backend.name) == (8, 2048, "vllm")
    for bad, match in [({"sampling": {"samples": 0}}, "samples must be >= 1"),
                       ({"sampling": {"temperature": 0}}, "copies of one answer"),
                       ({"backend": {"name": "gpt4"}}, "backend.name must be one of"),
                       ({"sampling": {"top_k": 5}}, r"unknown field\(s\) \['top_k'\]")]:
        with pytest.raises(ConfigError, match=match):
            load_eval_config("workflows/config/eval/tiny.yaml", bad)


def test_vllm_backend_gets_parallelism_pixels_and_the_protocol():
    from pgpo.evaluation.generate import gen_kwargs, model_args

    cfg = load_eval_config("workflows/config/eval/paper.yaml")
    args = model_args("Qwen/Qwen2.5-VL-7B-Instruct", cfg, {"min_pixels": 3136, "max_pixels": 1003520})
    assert (args["tensor_parallel_size"], args["data_parallel_size"]) == (1, 8)
    assert args["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 1003520}
    assert model_args("m", cfg, {"min_pixels": 3136, "max_pixels": None})["mm_processor_kwargs"] == {"min_pixels": 3136}
    g = gen_kwargs(cfg)
    assert (g["temperature"], g["top_p"], g["top_k"], g["repetition_penalty"], g["max_new_tokens"]) == \
        (1.0, 1.0, 0, 1.0, 2048)


@pytest.mark.parametrize("var", ["OPENAI_API_KEY", "USE_LLM_JUDGE", "API_TYPE"])
def test_judge_configuration_is_refused(var):
    with pytest.raises(JudgeConfigured, match=var):
        check_environment({var: "x", "PATH": "/bin"})
    check_environment({"PATH": "/bin"})


def test_foreign_metrics_are_refused():
    check_metrics("t", {"alias": "t", "avg_at_k,k_samples": 0.5, "avg_at_k_stderr,k_samples": 0.1})
    with pytest.raises(JudgeConfigured, match="gpt_eval_score"):
        check_metrics("t", {"avg_at_k,k_samples": 0.5, "gpt_eval_score,none": 0.9})


def test_pass_at_k_and_maj_at_k_on_samples_with_known_answers(tmp_path):
    """The same samples, three questions: avg@k (the paper's), pass@k (any sample right) and maj@k (the most
    frequent answer right; equivalent answers vote together, no answer does not vote)."""
    rows = [row(0, "4", ["\\boxed{4}", "\\boxed{5}", "\\boxed{5}", "no box"]),  # pass 1, majority 5: 0
            row(1, "0.5", ["\\boxed{\\frac{1}{2}}", "\\boxed{3}", "\\boxed{0.5}", "\\boxed{7}"]),  # 1/2 = 0.5: 2 votes
            row(2, "B", ["\\boxed{A}", "\\boxed{(b)}", "no box", "no box"], ["x", "y"])]  # a tie: A seen first
    r = score_benchmark(write_run(tmp_path, rows, 4), bootstrap_samples=500)
    assert [q["pass_at_k"] for q in r["per_question"]] == [1.0, 1.0, 1.0]
    assert [q["maj_at_k"] for q in r["per_question"]] == [0.0, 1.0, 0.0]
    assert r["avg_at_k"] == pytest.approx((0.25 + 0.5 + 0.25) / 3)
    assert r["pass_at_k"]["mean"] == 1.0 and r["maj_at_k"]["mean"] == pytest.approx(1 / 3)
    lo, hi = r["maj_at_k"]["ci95_bootstrap"]
    assert 0.0 <= lo <= 1 / 3 <= hi <= 1.0


def test_equivalent_answers_vote_together_and_an_answer_naming_no_option_only_with_itself():
    from pgpo.evaluation.score import vote_keys

    assert vote_keys(["0.5", "\\frac{1}{2}", "2", None, "2"], None, "pgpo", 0.0) == ["0.5", "0.5", "2", None, "2"]
    # multiple choice: 'B' and the option's text are one vote; '7' names no option (it cannot be a gold answer)
    choices = ["left bar", "right bar"]
    assert vote_keys(["7", "B", "right bar", "7", "A"], choices, "pgpo", 0.0) == ["7", "B", "B", "7", "A"]
