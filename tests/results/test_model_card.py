"""Model cards: rendered from the run's records, refreshed with evaluation results; a real training writes them."""

import json

import pytest
import yaml

from pgpo.records.stages import RunRecord, write_run
from pgpo.results.model_card import (
    MARKER,
    card_text,
    read_results,
    refresh_card,
    results_from_front,
    split_front_matter,
    write_run_cards,
)

HUB_BASE = "Qwen/Qwen2.5-VL-7B-Instruct"
COMMIT = "cc594898137f460bfe9f0759e9844b3ce807cfb5"


def _run(base=HUB_BASE, revision=COMMIT, finished=True):
    run = {"method": {"name": "pgpo", "description": "PGPO on DAPO", "shaper": {"name": "pgpo",
                                                                              "params": {"tau": 0.4, "beta": 2.0}},
                      "loss": {"type": "dapo", "epsilon_high": 0.28}},
           "config": {"profile": "paper", "model": {"path": base, "revision": revision},
                      "data": {"train": "data/virl39k/train.jsonl"}, "max_steps": 60, "seed": 1},
           "config_hash": "0123456789abcdef", "finished": finished}
    if finished:
        run |= {"global_steps": 60, "wall_seconds": 7200.0, "code_version": "f" * 40, "resumed_from": None,
                "inputs": {"train_split_sha256": "d" * 64, "model_hash": "e" * 16}, "final_checkpoint_hash": "a" * 16}
    return RunRecord(**run)


def test_card_names_base_method_parameters_hashes_and_steps():
    text = card_text(_run(), "pgpo-s1", checkpoint="runs/7b/pgpo-s1/final")
    front, body = split_front_matter(text)
    assert front["base_model"] == HUB_BASE and front["library_name"] == "transformers"
    assert {"pgpo", "dapo", "reinforcement-learning"} <= set(front["tags"]) and "model-index" not in front
    assert f"`{HUB_BASE}` at commit `{COMMIT}`" in body
    assert "tau: 0.4" in body and "beta: 2.0" in body and "epsilon_high: 0.28" in body  # the method's parameters
    assert "hash `0123456789abcdef`" in body and "d" * 64 in body and "e" * 16 in body
    assert "| Steps | 60 (finished in 7200.0 s) |" in body and "None" not in text
    assert 'from_pretrained("runs/7b/pgpo-s1/final")' in body and "Not evaluated yet" in body
    running = card_text(_run(finished=False), "pgpo-s1", step=12)
    assert "| Steps | 12 of 60 (training in progress) |" in running


def test_local_base_has_no_hub_base_model_and_reads_its_license(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "README.md").write_text("---\nlicense: apache-2.0\n---\n# base\n")
    (base / "warmstart.json").write_text(json.dumps({"base": "results/tiny/model/base"}))
    front, body = split_front_matter(card_text(_run(str(base), ""), "grpo-s0"))
    assert "base_model" not in front and front["license"] == "apache-2.0"
    assert "(a supervised warm start of `results/tiny/model/base`)" in body


def _eval_dir(tmp_path, name, results):
    ev = tmp_path / "eval" / name
    (ev / "samples").mkdir(parents=True)
    for bench, value in results.items():
        (ev / "samples" / f"{bench}.jsonl").write_text("{}\n")
        (ev / f"{bench}.json").write_text(json.dumps({"avg_at_k": value, "k": 8, "n_questions": 50, "n_failed": 1,
                                                      "ci95_bootstrap": [value - 0.1, value + 0.1],
                                                      "per_question": [], "checkpoint_hash": "c",
                                                      "samples_sha256": "s"}))
    (ev / "summary.json").write_text("{}")  # not a benchmark: no samples file of that name
    return ev


def test_refresh_adds_results_keeps_other_runs_and_replaces_a_re_evaluated_benchmark(tmp_path):
    run_dir = tmp_path / "runs" / "pgpo-s1"
    (run_dir / "final").mkdir(parents=True)
    (run_dir / "final" / "config.json").write_text("{}")
    write_run(run_dir, _run())
    write_run_cards(run_dir)
    card = run_dir / "final" / "README.md"
    first = _eval_dir(tmp_path, "a", {"mathvista": 0.5, "mathverse": 0.25})
    assert refresh_card(run_dir / "final", first) == card
    second = _eval_dir(tmp_path, "b", {"mathverse": 0.375, "wemath": 0.625})
    refresh_card(run_dir / "final", second)
    front, body = split_front_matter(card.read_text())
    values = {r["dataset"]["name"]: (r["metrics"][0]["value"], front["pgpo_results"][r["dataset"]["name"]]["source"])
              for r in front["model-index"][0]["results"]}
    assert values == {"mathvista": (0.5, str(first)), "mathverse": (0.375, str(second)),
                      "wemath": (0.625, str(second))}
    assert "| mathverse | 0.375 (k=8) | [0.275, 0.475] | 50 | 1 |" in body and "Not evaluated yet" not in body
    assert read_results(first).keys() == {"mathvista", "mathverse"}
    write_run_cards(run_dir)  # the end of a (re-)run keeps the results already on the card
    assert "model-index" in split_front_matter(card.read_text())[0]


def test_cards_load_with_the_hubs_loader_and_keep_their_data(tmp_path):
    """Issue 25: huggingface_hub.ModelCard.load refused the card (a model-index `source` without a `url`); every
    card pgpo writes now loads, and the data it parses is what was written."""
    from huggingface_hub import ModelCard

    results = {"mathvista": {"avg_at_k": 0.51234, "k": 8, "ci95": [0.4, 0.6], "n_questions": 50, "n_failed": 1,
                             "source": str(tmp_path / "eval")},
               "wemath": {"avg_at_k": 0.25, "k": 4, "ci95": None, "n_questions": 20, "n_failed": 0, "source": ""}}
    local = tmp_path / "base"
    local.mkdir()
    (local / "README.md").write_text("---\nlicense: apache-2.0\n---\n")
    cards = {"hub, evaluated": card_text(_run(), "pgpo-s1", results), "hub": card_text(_run(), "pgpo-s1"),
             "local, training": card_text(_run(str(local), "", finished=False), "grpo-s0", step=3)}
    for what, text in cards.items():
        path = tmp_path / what / "README.md"
        path.parent.mkdir()
        path.write_text(text)
        card = ModelCard.load(path)
        assert card.data.to_dict() == split_front_matter(text)[0], what
        assert MARKER in card.text and card.data.library_name == "transformers", what
    hub = ModelCard.load(tmp_path / "hub, evaluated" / "README.md").data
    assert (hub.base_model, hub.model_name) == (HUB_BASE, "pgpo-s1")
    assert {(e.dataset_name, e.metric_type, e.metric_value, e.task_type) for e in hub.eval_results} == {
        ("mathvista", "avg@8", 0.5123, "visual-question-answering"),
        ("wemath", "avg@4", 0.25, "visual-question-answering")}
    assert hub.pgpo_results["mathvista"] == {"ci95": [0.4, 0.6], "n_questions": 50, "n_failed": 1,
                                             "source": str(tmp_path / "eval")}
    local_card = ModelCard.load(tmp_path / "local, training" / "README.md").data
    assert local_card.base_model is None and local_card.license == "apache-2.0" and local_card.eval_results is None


def test_a_card_written_before_the_details_moved_keeps_its_results():
    """Cards written before pgpo's details left model-index (a `pgpo` key and `source.name` in each result) are
    still read by refresh_card, and rewritten in the loadable layout."""
    old = {"model-index": [{"name": "pgpo-s1", "results": [{
        "task": {"type": "visual-question-answering"}, "dataset": {"name": "mathvista", "type": "mathvista"},
        "metrics": [{"type": "avg@8", "name": "avg@8", "value": 0.5}], "source": {"name": "/eval/a"},
        "pgpo": {"ci95": [0.4, 0.6], "n_questions": 50, "n_failed": 1}}]}]}
    results = results_from_front(old)
    assert results == {"mathvista": {"avg_at_k": 0.5, "k": 8, "source": "/eval/a", "ci95": [0.4, 0.6],
                                     "n_questions": 50, "n_failed": 1}}
    front, _ = split_front_matter(card_text(_run(), "pgpo-s1", results))
    assert results_from_front(front) == results and "source" not in front["model-index"][0]["results"][0]


def test_refresh_leaves_a_card_pgpo_did_not_write(tmp_path):
    snapshot = tmp_path / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    original = "---\nlicense: apache-2.0\n---\n# Qwen2.5-VL-7B-Instruct\n"
    (snapshot / "README.md").write_text(original)
    assert refresh_card(snapshot, _eval_dir(tmp_path, "base", {"mathvista": 0.6})) is None
    assert (snapshot / "README.md").read_text() == original
    assert refresh_card(tmp_path / "no-card", tmp_path) is None


@pytest.mark.slow
def test_real_training_writes_cards_and_evaluate_adds_its_results(tiny_dir, tiny_data, tmp_path, capsys):
    from pgpo.cli import main
    from pgpo.config.schema import REPO, load_method, load_train_config
    from pgpo.training.run import train

    cfg = load_train_config(REPO / "workflows/config/train/tiny.yaml", {
        "model": {"path": str(tiny_dir)}, "data": {"train": str(tiny_data / "train.jsonl")},
        "rollout": {"prompts_per_step": 2, "update_prompts": 2, "num_generations": 2, "max_completion_length": 4},
        "micro_batch": 4, "max_steps": 1, "save_steps": 1})
    run_dir = tmp_path / "runs" / "grpo-s0"
    run = train(cfg, load_method("grpo"), run_dir)
    for card in (run_dir / "README.md", run_dir / "final" / "README.md"):
        text = card.read_text()
        assert MARKER in text and "[None]" not in text and 'model="None"' not in text
        front, body = split_front_matter(text)
        assert front["library_name"] == "transformers" and "grpo" in front["tags"]
        assert f"`{tiny_dir}`" in body and run.config_hash in body
        assert run.inputs["train_split_sha256"] in body and "| Steps | 1 (finished in" in body
    ev = tmp_path / "eval" / "grpo-s0"
    assert main(["evaluate", "--checkpoint", str(run_dir / "final"), "--data", str(tiny_data), "--benchmarks",
                 "tiny_count", "--samples", "2", "--set", "limit=2", "--out", str(ev)]) == 0
    assert "model card updated" in capsys.readouterr().out
    front, _ = split_front_matter((run_dir / "final" / "README.md").read_text())
    (result,) = front["model-index"][0]["results"]
    scored = json.loads((ev / "tiny_count.json").read_text())
    assert result["dataset"]["name"] == "tiny_count" and result["metrics"][0] == {
        "type": "avg@2", "name": "avg@2", "value": round(scored["avg_at_k"], 4)}
    yaml.safe_load((run_dir / "final" / "README.md").read_text().split("---")[1])  # valid front matter
    from huggingface_hub import ModelCard

    loaded = ModelCard.load(run_dir / "final" / "README.md").data  # the hub's own loader reads it back
    assert loaded.to_dict() == front and loaded.model_name == "grpo-s0"
    assert [(e.dataset_name, e.metric_value) for e in loaded.eval_results] == [
        ("tiny_count", round(scored["avg_at_k"], 4))]


@pytest.mark.slow
def test_trainer_checkpoint_saves_write_pgpo_card_not_trl_one(tiny_dir, tiny_data, tmp_path):
    """TRL calls create_model_card at every checkpoint save: the run directory's card says the run is training."""
    from dataclasses import asdict

    from pgpo.config.schema import REPO, load_method, load_train_config
    from pgpo.training.run import build_trainer

    cfg = load_train_config(REPO / "workflows/config/train/tiny.yaml", {
        "model": {"path": str(tiny_dir)}, "data": {"train": str(tiny_data / "train.jsonl")}, "max_steps": 30})
    method = load_method("dapo")
    (tmp_path / "run_config.json").write_text(json.dumps({"method": asdict(method), "config": asdict(cfg),
                                                          "config_hash": "feedfacefeedface"}))
    trainer = build_trainer(cfg, method, tmp_path)
    trainer.state.global_step = 7
    trainer.create_model_card(model_name=tmp_path.name)
    text = (tmp_path / "README.md").read_text()
    assert MARKER in text and "| Steps | 7 of 30 (training in progress) |" in text and "feedfacefeedface" in text
