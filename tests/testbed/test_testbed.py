"""The credit-assignment testbed's parts on the tiny model: filler words, suites, the text-only warm start, the
measurements (filler span, forced answer, answer share), the gates (a failing gate exits naming its value), the plan
and the paired table on constructed records with a known difference."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from pgpo.config.schema import REPO, ConfigError


@pytest.fixture(scope="module")
def tok(tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir)


@pytest.fixture(scope="module")
def words(tok):
    from pgpo.testbed.filler import filler_words

    return filler_words(tok)


@pytest.fixture(scope="module")
def tb_data(tiny_dir, tmp_path_factory):
    from pgpo.testbed.data import Variant, make_testbed_data

    variants = {"r6": Variant("random", 6), "f6": Variant("fixed", 6), "r2": Variant("random", 2)}
    return make_testbed_data(tmp_path_factory.mktemp("tb") / "data", tiny_dir, variants, ["digit", "count"], seed=0,
                             train_per_skill=4, warmstart_per_skill=6, eval_per_skill=3)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- filler words ------------------------------------------------------------------------------------------------
def test_filler_words_are_single_tokens_in_context_and_never_answers(tok, words):
    from pgpo.tiny.synthetic import COLOURS

    assert len(words) == 40 and len(set(words)) == len(words)  # README and testbed.yaml: ln 40 = 3.69 nats
    assert not any(w.isdigit() or len(w) < 2 or w in COLOURS or not w.islower() for w in words)
    assert "circle" not in words  # an answer of the shape task
    filler = " " + " ".join(words)
    target = f"<think>{filler}</think>\\boxed{{7}}"
    ids = tok(target, add_special_tokens=False)["input_ids"]
    head = tok("<think>", add_special_tokens=False)["input_ids"]
    tail = tok("</think>\\boxed{7}", add_special_tokens=False)["input_ids"]
    assert len(ids) == len(head) + len(words) + len(tail)  # one token per word, in context
    assert ids[:len(head)] == head and ids[-len(tail):] == tail


# -- data --------------------------------------------------------------------------------------------------------
def test_suites_are_deterministic_and_variants_differ_only_in_filler(tiny_dir, tb_data, tmp_path, words):
    from pgpo.testbed.data import Variant, make_testbed_data

    again = make_testbed_data(tmp_path / "again", tiny_dir, {"r6": Variant("random", 6), "f6": Variant("fixed", 6),
                                                             "r2": Variant("random", 2)},
                              ["digit", "count"], seed=0, train_per_skill=4, warmstart_per_skill=6, eval_per_skill=3)
    for name in ("train", "suite_digit", "suite_count", "warmstart_r6", "warmstart_f6", "warmstart_r2"):
        assert (tb_data / f"{name}.jsonl").read_bytes() == (again / f"{name}.jsonl").read_bytes(), name
    r6, f6, r2 = (_rows(tb_data / f"warmstart_{v}.jsonl") for v in ("r6", "f6", "r2"))
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("rationale", "id")} for r in rows]  # noqa: E731
    assert strip(r6) == strip(f6) == strip(r2)  # same problems and images; only the filler differs
    assert {r["task"] for r in r6} == {"digit", "count"} and len(r6) == 12
    fillers = [r["rationale"].split() for r in r6]
    assert all(len(f) == 6 and set(f) <= set(words) for f in fillers) and len({tuple(f) for f in fillers}) == 12
    assert len({r["rationale"] for r in f6}) == 1 and len(f6[0]["rationale"].split()) == 6
    assert all(len(r["rationale"].split()) == 2 for r in r2)
    assert json.loads((tb_data / "filler_words.json").read_text()) == words
    other_seed = make_testbed_data(tmp_path / "s1", tiny_dir, {"r6": Variant("random", 6)}, ["digit"], seed=1,
                                   train_per_skill=2, warmstart_per_skill=2, eval_per_skill=1)
    assert _rows(other_seed / "warmstart_r6.jsonl")[0]["rationale"] != r6[0]["rationale"]


def test_bad_variants_are_named():
    from pgpo.testbed.data import parse_variants

    with pytest.raises(ValueError, match="testbed.variants.x: filler must be one of"):
        parse_variants({"x": {"filler": "uniform", "length": 4}})
    with pytest.raises(ValueError, match="testbed.variants.y: length must be a positive integer"):
        parse_variants({"y": {"filler": "random", "length": 0}})
    with pytest.raises(ValueError, match="expected keys filler and length"):
        parse_variants({"z": {"filler": "random"}})


# -- the text-only warm start ------------------------------------------------------------------------------------
def test_the_blind_loss_never_sees_the_image_and_the_seeing_loss_does(tiny, tb_data):
    import dataclasses

    import torch
    from PIL import Image

    from pgpo.data.datasets import load_split
    from pgpo.testbed.warmstart import _summed_loss
    from pgpo.tiny.warmstart import _batch

    model, processor = tiny
    records = load_split(tb_data / "warmstart_r6.jsonl")[:3]
    black = tb_data / "black.png"
    Image.new("RGB", (112, 112), (0, 0, 0)).save(black)
    blank = [dataclasses.replace(r, images=(str(black),)) for r in records]
    with torch.no_grad():
        blind = [_summed_loss(model, _batch(processor, rs), True)[0].item() for rs in (records, blank)]
        seeing = [_summed_loss(model, _batch(processor, rs), False)[0].item() for rs in (records, blank)]
    assert blind[0] == pytest.approx(blind[1], abs=1e-5)
    assert abs(seeing[0] - seeing[1]) > 1e-4
    n = _summed_loss(model, _batch(processor, records), True)[1]
    target = processor.tokenizer(f"<think>{records[0].rationale}</think>\\boxed{{{records[0].answer}}}<|im_end|>",
                                 add_special_tokens=False)["input_ids"]
    assert n == 3 * len(target)  # every target token, nothing of the prompt
    # exactly the blind view training uses (pgpo.training.blind_forward.blind_forward: visual columns dropped, positions kept)
    from pgpo.training.blind_forward import blind_forward

    one = _batch(processor, records[:1])
    t = int((one["labels"] != -100).sum())
    with torch.no_grad():
        logps = blind_forward(model, one["input_ids"], one["attention_mask"], one["mm_token_type_ids"],
                              one["image_grid_thw"], t)
        summed = _summed_loss(model, one, True)[0].item()
    assert -logps.sum().item() == pytest.approx(summed, rel=1e-4)
    # answer_weight: the answer token (one per target here) counts w times, nothing else changes
    from pgpo.methods.answer_span import answer_token_mask

    batch = _batch(processor, records)
    answer = answer_token_mask(batch["input_ids"], (batch["labels"] != -100).long(), processor.tokenizer)
    assert answer.sum(-1).tolist() == [1, 1, 1]
    with torch.no_grad():
        (l1, w1), (l5, w5) = (_summed_loss(model, batch, False, answer, w) for w in (1.0, 5.0))
    assert w5 - w1 == 12 and l1.item() == pytest.approx(seeing[0], rel=1e-5) and l5.item() > l1.item()


def test_the_testbed_warm_start_learns_and_records_its_text_only_share(tiny_dir, tb_data, tmp_path):
    from pgpo.testbed.warmstart import TestbedWarmStartConfig, testbed_warm_start

    cfg = TestbedWarmStartConfig(steps=3, batch_size=8, lr=2e-3, warmup_steps=1, eval_every=0, eval_items=1,
                                 variant="r2", text_only_share=0.5)
    report = testbed_warm_start(tiny_dir, tb_data, tmp_path / "ws", cfg)
    assert report["filler_length"] == 2 and report["examples"] == 24
    assert 4 <= report["text_only_examples"] <= 20  # Binomial(24, 0.5)
    assert (tmp_path / "ws" / "config.json").exists() and math.isfinite(report["curve"][-1]["loss"])
    # what a rerun on another machine needs to tell why its warm start differs: code, inputs, kernels, weights
    from pgpo.util.provenance import code_version, dir_hash

    assert report["code_version"] == code_version() and report["machine"]["cpu_capability"]
    assert report["inputs"]["base_hash"] == dir_hash(tiny_dir) and len(report["inputs"]["data_manifest_sha256"]) == 64
    assert report["weights_hash"] == dir_hash(tmp_path / "ws", ("*.safetensors",)) != dir_hash(tiny_dir,
                                                                                             ("*.safetensors",))
    with pytest.raises(ValueError, match="text_only_share must be in"):
        TestbedWarmStartConfig(variant="r2", text_only_share=1.0)



def test_the_skill_phase_comes_first_without_filler_noise_or_blind_examples(tiny_dir, tb_data, tmp_path,
                                                                            monkeypatch):
    from pgpo.data.datasets import load_split
    from pgpo.testbed import warmstart
    from pgpo.testbed.warmstart import TestbedWarmStartConfig, testbed_warm_start

    seen = []  # the rows of every supervised batch, in order (the real batch is still built and trained on)
    real = warmstart.supervised_batch
    monkeypatch.setattr(warmstart, "supervised_batch", lambda proc, rows: seen.append(list(rows)) or real(proc, rows))
    cfg = TestbedWarmStartConfig(skill_steps=2, steps=1, batch_size=8, lr=2e-3, warmup_steps=1, eval_every=0,
                                 eval_items=1, variant="r2", text_only_share=0.9, label_noise=1.0, skill_lr=1e-3)
    report = testbed_warm_start(tiny_dir, tb_data, tmp_path / "ws", cfg)
    clean = {r.id: r.answer for r in load_split(tb_data / "warmstart_r2.jsonl")}
    skill_rows, filler_rows = [r for b in seen[:2] for r in b], [r for b in seen[2:] for r in b]
    assert len(skill_rows) == 16 and all(r.rationale == "" and r.answer == clean[r.id] for r in skill_rows)
    assert len(filler_rows) == 8 and all(len(r.rationale.split()) == 2 for r in filler_rows)
    assert report["examples"] == 24 and 1 <= report["text_only_examples"] <= 8  # blind only in the last step
    assert [(c["step"], c["phase"], c["lr"]) for c in report["curve"]] == [(2, "skills", 1e-3), (3, "filler", 2e-3)]
    with pytest.raises(ValueError, match="skill_steps must be >= 0"):
        TestbedWarmStartConfig(variant="r2", skill_steps=-1)
    with pytest.raises(ValueError, match="skill_lr must be > 0"):
        TestbedWarmStartConfig(variant="r2", skill_lr=0.0)


@pytest.mark.parametrize("met_at", [4, None])
def test_the_skill_phase_stops_at_its_criterion_on_held_out_items_and_the_filler_phase_keeps_the_vision_tower(
        tiny_dir, tb_data, tmp_path, monkeypatch, met_at):
    from pgpo.data.datasets import load_split
    from pgpo.testbed import warmstart
    from pgpo.testbed.warmstart import TestbedWarmStartConfig, testbed_warm_start

    seen, checked, snapshot = [], [], {}
    real_batch, real_freeze = warmstart.supervised_batch, warmstart.freeze_vision
    monkeypatch.setattr(warmstart, "supervised_batch", lambda proc, rows: seen.append(list(rows)) or
                        real_batch(proc, rows))

    def freeze(model):  # the vision weights when the filler phase starts, to compare with the saved ones
        snapshot.update({n: p.detach().clone() for n, p in model.named_parameters()})
        return real_freeze(model)

    monkeypatch.setattr(warmstart, "freeze_vision", freeze)
    steps_done = lambda: len(seen)  # noqa: E731 - one supervised batch per step (no blind rows in the skill phase)

    def fake_accuracy(records, completions):  # the criterion (0.9) is met at step `met_at`, never if None
        checked.append([r.id for r in records])
        level = 0.95 if met_at is not None and steps_done() >= met_at else 0.5
        return {"count": level, "digit": level, "all": level}

    monkeypatch.setattr(warmstart, "accuracy", fake_accuracy)
    cfg = TestbedWarmStartConfig(skill_steps=6, steps=2, batch_size=4, lr=2e-3, warmup_steps=1, eval_every=2,
                                 eval_items=2, variant="r2", text_only_share=0.0, skill_criterion=0.9,
                                 freeze_vision_after_skills=True, schedule="cosine")
    report = testbed_warm_start(tiny_dir, tb_data, tmp_path / "ws", cfg)
    end = met_at or 6
    assert report["skill_phase"]["steps"] == end and report["skill_phase"]["criterion_met"] is (met_at is not None)
    assert [(c["step"], c["phase"]) for c in report["curve"]] == (
        [(2, "skills"), (4, "skills"), (6, "filler")] if met_at else
        [(2, "skills"), (4, "skills"), (6, "skills"), (8, "filler")])
    assert len(seen) == end + 2 and report["examples"] == (end + 2) * 4
    assert report["curve"][-1]["lr"] == pytest.approx(2e-3 * 0.5 * (1 + math.cos(math.pi / 2)))  # the filler's t=1
    # the checks are the last 2 warm-start items of each skill, never trained on, never the suites
    rows = load_split(tb_data / "warmstart_r2.jsonl")
    held = [r.id for s in ("digit", "count") for r in [x for x in rows if x.task == s][-2:]]
    assert all(sorted(c) == sorted(held) for c in checked) and len(checked) == len(report["curve"])
    assert not {r.id for b in seen for r in b} & set(held) and report["skill_phase"]["check_items"] == 4
    # the filler phase trained the language model only
    import torch

    from pgpo.models.loading import load_model

    saved = dict(load_model(tmp_path / "ws").named_parameters())  # the checkpoint's names differ (visual.*)
    visual = [n for n in snapshot if n.startswith("model.visual.")]
    assert set(visual) <= set(saved)
    assert visual and report["skill_phase"]["vision_params_frozen"] == sum(snapshot[n].numel() for n in visual)
    assert all(torch.equal(saved[n], snapshot[n]) for n in visual)
    assert any(not torch.equal(saved[n], snapshot[n]) for n in snapshot if n.startswith("model.language_model."))
    with pytest.raises(ValueError, match="skill_criterion needs skill_steps"):
        TestbedWarmStartConfig(variant="r2", skill_criterion=0.9)


def test_the_cosine_schedule_warms_up_and_settles_each_phase_and_constant_is_the_reference_schedule():
    from pgpo.testbed.warmstart import TestbedWarmStartConfig, lr_factor

    cos = TestbedWarmStartConfig(variant="r", skill_steps=100, skill_lr=2e-3, steps=50, lr=1e-3, warmup_steps=10,
                                 schedule="cosine")
    f = [lr_factor(s, cos) for s in range(150)]
    assert f[0] == pytest.approx(0.2) and f[9] == pytest.approx(2 * 0.5 * (1 + math.cos(math.pi * 9 / 100)))
    assert f[50] == pytest.approx(1.0) and 0 < f[99] < 1e-3 * 2    # half-way at half the peak; ~0 at the end
    assert f[100] == pytest.approx(0.1) and f[109] == pytest.approx(0.5 * (1 + math.cos(math.pi * 9 / 50)))
    assert f[125] == pytest.approx(0.5) and 0 < f[149] < 1e-2 * 1  # the filler phase warms up and settles again
    assert all(a >= b for a, b in zip(f[10:100], f[11:100])) and all(a >= b for a, b in zip(f[110:], f[111:]))
    const = TestbedWarmStartConfig(variant="r", skill_steps=100, skill_lr=2e-3, steps=50, lr=1e-3, warmup_steps=10)
    # how the reference warm start was trained: one warm-up from step 0, the skill phase at skill_lr, then lr
    assert [lr_factor(s, const) for s in (0, 9, 99, 100, 149)] == pytest.approx([0.2, 2.0, 2.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="schedule must be one of"):
        TestbedWarmStartConfig(variant="r", schedule="linear")

# -- measurement ------------------------------------------------------------------------------------------------
def test_filler_span_and_the_forced_suffix_tokenise_as_the_target(tok, words):
    from pgpo.testbed.measure import FORCED, filler_span

    filler = " " + " ".join(words[:5])
    ids = tok(f"<think>{filler}</think>\\boxed{{4}}", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    begin, end = filler_span(ids, tok)
    assert tok.decode(ids[begin:end]) == filler and end - begin == 5
    assert ids[:end] + tok(FORCED, add_special_tokens=False)["input_ids"] + tok("4}", add_special_tokens=False)[
        "input_ids"] == ids[:-1]  # forcing reproduces the warm-start target's own tokens
    no_close = tok(f"<think>{filler}", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert filler_span(no_close, tok)[1] == len(no_close) - 1


def test_measure_forced_probability_is_the_models_own(tiny, tb_data):
    import torch

    from pgpo.methods.components import resolve_components
    from pgpo.config.schema import load_method
    from pgpo.data.datasets import load_split
    from pgpo.tiny.sampling import load_images, prompt_texts
    from pgpo.testbed.measure import FORCED, filler_span, measure

    model, processor = tiny
    records = load_split(tb_data / "suite_digit.jsonl")[:2]
    samples = measure(model, processor, records, k=2, max_new_tokens=10, seed=0,
                      components=resolve_components(load_method("pgpo")))
    assert len(samples) == 4 and all(0.0 <= s.answer_share <= 1.0 and 0.0 < s.forced_p < 1.0 for s in samples)
    ident = measure(model, processor, records, k=2, max_new_tokens=10, seed=0,
                    components=resolve_components(load_method("dapo")))
    assert [s.forced_p for s in ident] == [s.forced_p for s in samples]  # same seed, same samples
    # the forced probability by hand, for the first sample: one unpadded forward of prompt + filler + forced
    tok = processor.tokenizer
    s, record = samples[0], records[0]
    prompt = prompt_texts(processor, [record])[0]
    enc = processor(images=load_images([record]), text=[prompt], return_tensors="pt")
    # the sampled completion is not kept; rebuild it from the filler (the sample began with <think> if it has one)
    head = tok("<think>", add_special_tokens=False)["input_ids"]
    for prefix in (head + s.filler_ids, s.filler_ids):
        ids = prefix + tok(FORCED, add_special_tokens=False)["input_ids"]
        answer = tok(record.answer + "}", add_special_tokens=False)["input_ids"]
        full = torch.cat([enc["input_ids"][0], torch.tensor(ids + answer)])[None]
        mm = torch.cat([enc["mm_token_type_ids"][0], torch.zeros(len(ids) + len(answer), dtype=torch.long)])[None]
        with torch.no_grad():
            logits = model(input_ids=full, attention_mask=torch.ones_like(full), mm_token_type_ids=mm,
                           pixel_values=enc["pixel_values"], image_grid_thw=enc["image_grid_thw"]).logits[0]
        logp = torch.log_softmax(logits.float(), -1)
        n = len(answer)
        p = logp[-n - 1:-1].gather(-1, torch.tensor(answer)[:, None]).sum().exp().item()
        if abs(math.log(p) - math.log(s.forced_p)) < 1e-3:  # relative: an untrained model's p is ~1e-5
            break
    else:
        pytest.fail(f"forced_p {s.forced_p} is not the model's probability of the answer after the filler")
    # dapo (identity) gives every token the same weight: the share is the answer tokens' share of the response
    assert all(s.answer_share < 0.5 for s in ident)
    assert filler_span  # imported for the docs above


# -- gates --------------------------------------------------------------------------------------------------------
def test_gate_ranges_and_message():
    from pgpo.testbed.gates import GateSpec, evaluate, failure_message

    measured = {"filler_entropy": 3.4, "format": 0.9, "accuracy": {"count": 0.25, "digit": 0.5}, "answer_share": 0.85}
    rows = evaluate(measured, {"filler_entropy": [3.0, None], "format": [0.95, None], "accuracy": [0.3, 0.7],
                               "answer_share": [0.8, None]})
    assert {r["name"]: r["passed"] for r in rows} == {"filler_entropy": True, "format": False,
                                                      "accuracy/count": False, "accuracy/digit": True,
                                                      "answer_share": True}
    msg = failure_message({"variant": "random48", "checkpoint": "ws", "gates": rows})
    assert "format = 0.9 not in [0.95, +inf]" in msg and "accuracy/count = 0.25 not in [0.3, 0.7]" in msg
    assert "random48" in msg and "filler_entropy" not in msg
    assert not evaluate({"filler_entropy": float("nan")}, {"filler_entropy": [None, None]})[0]["passed"]
    assert GateSpec(thresholds={"format": ["1.5", "null"]}).thresholds == {"format": [1.5, None]}  # --config text
    with pytest.raises(ValueError, match="gates.format: bound 'high' is not a number or null"):
        GateSpec(thresholds={"format": [0.9, "high"]})
    with pytest.raises(ValueError, match="unknown gate"):
        GateSpec(thresholds={"entropy": [3, None]})
    with pytest.raises(ValueError, match="needs gates.weights_method"):
        GateSpec(thresholds={"answer_share": [0.8, None]})


def test_a_failing_gate_exits_3_naming_its_value_and_writes_no_pass_marker(tiny_dir, tb_data, tmp_path):
    spec = {"thresholds": {"format": [1.5, None], "accuracy": [0.0, 1.0], "answer_share": [0.0, None]},
            "items_per_skill": 1, "samples": 2, "weights_method": "pgpo"}
    cmd = [sys.executable, "-m", "pgpo.cli", "testbed", "gates", "--checkpoint", str(tiny_dir), "--data",
           str(tb_data), "--variant", "r2", "--spec", json.dumps(spec), "--report", str(tmp_path / "report.json"),
           "--out", str(tmp_path / "gates.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 3, proc.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    fmt = next(g for g in report["gates"] if g["name"] == "format")
    assert not report["passed"] and not fmt["passed"]
    assert f"format = {fmt['value']:.4g} not in [1.5, +inf]" in proc.stderr and "r2" in proc.stderr
    assert not (tmp_path / "gates.json").exists()
    assert {g["name"] for g in report["gates"]} == {"format", "accuracy/digit", "accuracy/count", "answer_share"}
    assert report["checkpoint_weights_hash"] and report["machine"]["threads"] >= 1 and report["code_version"]
    spec["thresholds"]["format"] = [0.0, None]
    cmd[cmd.index("--spec") + 1] = json.dumps(spec)
    assert subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO).returncode == 0
    assert json.loads((tmp_path / "gates.json").read_text())["passed"]


# -- plan ---------------------------------------------------------------------------------------------------------
def _profile(path, overrides=None):
    from pgpo.workflow.plan import resolve_extends
    from pgpo.config.schema import deep_merge
    import yaml

    raw = deep_merge(yaml.safe_load((REPO / path).read_text()), overrides or {})
    return resolve_extends(raw, REPO / "workflows/config")


def test_the_plan_shares_seeds_across_arms_and_applies_gate_overrides():
    from pgpo.testbed import plan

    config = _profile("workflows/config/testbed.yaml")
    runs = plan.runs(config)
    main = [(a, s) for v, a, s in runs if v == "random48"]
    assert {a for a, _ in main} == {"dapo", "pgpo", "oracle", "placebo"}
    assert all(sorted(s for b, s in main if b == a) == list(range(8)) for a in {"dapo", "pgpo"})
    fixed = json.loads(plan.gate_spec(config, "fixed48"))["thresholds"]
    assert fixed["filler_entropy"] == [None, 0.1] and fixed["answer_share"] == [0.8, None]
    assert json.loads(plan.gate_spec(config, "random48"))["thresholds"]["filler_entropy"] == [3.0, None]


def test_the_core_table_is_the_cores_runs_and_the_full_table_every_run():
    from pgpo.testbed import plan

    config = _profile("workflows/config/testbed.yaml")
    core = json.loads(plan.table_spec(config, "core"))
    assert core["out"] == "results/testbed/credit_testbed_core" and list(core["gate_reports"]) == ["random48"]
    assert core["records"] == [f"results/testbed/testbed/random48/records/{a}-s{s}.json"
                               for a in ("dapo", "pgpo") for s in range(8)]
    full = json.loads(plan.table_spec(config))
    assert full["out"] == "results/testbed/credit_testbed" and len(full["records"]) == 32 + 8 + 8
    assert list(full["gate_reports"]) == ["random48", "fixed48", "random8"]


@pytest.mark.parametrize("change,message", [
    ({"reference": "grpo"}, "reference arm 'grpo' is not among its arms"),
    ({"runs": {"random9": {"arms": ["dapo"], "seeds": [0]}}}, "testbed.runs.random9: not a declared variant"),
    ({"arms": {"dapo": "dapoo"}}, "testbed.arms.dapo: unknown method 'dapoo'"),
    ({"gates": {"thresholds": {"entropy": [1, None]}}}, "unknown gate"),
    ({"accuracy_curve": "reward"}, "accuracy_curve 'reward' is not a key of testbed.curves"),
    ({"colour": 1}, "unknown key"),
    ({"core": {"variant": "random9", "arms": ["dapo"]}}, "testbed.core.variant: 'random9' has no runs"),
    ({"core": {"variant": "random2", "arms": ["pgpo"]}}, "must be arms of runs.random2 and include the reference"),
    ({"core": {"seeds": [0]}}, "testbed.core: expected"),
    ({"runs": {"random2": {"arms": ["dapo", "pgpo"], "seeds": [0, 1, 0]}}},
     r"testbed.runs.random2.seeds: 0 listed more than once in \[0, 1, 0\]; list each once"),
    ({"runs": {"random2": {"arms": ["dapo", "pgpo", "dapo"], "seeds": [0]}}},
     r"testbed.runs.random2.arms: 'dapo' listed more than once"),
])
def test_bad_testbed_configs_are_named(change, message):
    from pgpo.testbed import plan

    config = _profile("workflows/config/testbed_quick.yaml", {"testbed": change})
    with pytest.raises(ConfigError, match=message):
        plan.check(config, REPO)


def test_the_quick_profile_passes_the_checks():
    from pgpo.testbed import plan

    plan.check(_profile("workflows/config/testbed_quick.yaml"), REPO)


# -- the paired table on constructed records ---------------------------------------------------------------------
def _record(arm, seed, shift, auc, gain_step):
    rng = np.random.default_rng(seed)
    base = {k: rng.uniform(0.2, 0.6, size=20) for k in ("count", "digit")}
    return {"arm": arm, "seed": seed, "variant": "v", "run": "", "global_steps": 30, "block": 5, "auc": auc,
            "steps_to_gain": gain_step, "filler_entropy": 3.5 - shift, "forced_mean": 0.0,
            "forced": {k: {"ids": [f"{k}{i}" for i in range(20)], "p": list(v + shift)} for k, v in base.items()}}


def test_the_paired_table_recovers_a_constructed_difference(tmp_path):
    from pgpo.testbed.table import compare

    arms = {"dapo": {s: _record("dapo", s, 0.0, 0.4 + 0.01 * s, 20) for s in range(6)},
            "pgpo": {s: _record("pgpo", s, 0.05, 0.45 + 0.01 * s, None if s == 0 else 10) for s in range(6)}}
    rows = {r["metric"]: r for r in compare("v", arms, "dapo", bootstrap=500)}
    assert rows["forced_answer"]["diff"] == pytest.approx(0.05) and rows["forced_answer"]["n_questions"] == 40
    assert rows["forced_answer"]["p_value"] == pytest.approx(2 / 2 ** 6)  # every seed positive: exact sign flip
    assert rows["auc"]["diff"] == pytest.approx(0.05) and rows["filler_entropy"]["diff"] == pytest.approx(-0.05)
    assert rows["steps_to_gain"]["censored"] == 1  # seed 0 never gained: censored at 30 + 5
    assert rows["steps_to_gain"]["diff"] == pytest.approx((35 - 20 + 5 * (10 - 20)) / 6)
    unpaired = {s: _record("pgpo", s, 0.05, 0.4, 10) for s in range(6)}
    unpaired[3]["forced"]["count"]["ids"][0] = "other"
    with pytest.raises(ValueError, match="different held-out questions"):
        compare("v", {"dapo": arms["dapo"], "pgpo": unpaired}, "dapo", bootstrap=100)
    with pytest.raises(ValueError, match="no record of the reference arm"):
        compare("v", {"pgpo": arms["pgpo"]}, "dapo", bootstrap=100)


def test_a_curve_the_run_never_logged_is_named(tmp_path):
    from pgpo.testbed.records import read_curves

    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward": 0.5}) + "\n")
    assert read_curves(tmp_path / "metrics.jsonl", {"r": "reward"})["r"]["values"] == [0.5]
    with pytest.raises(KeyError, match="no step logged 'rollout_all/accuracy'.*logged keys: \\['reward', 'step'\\]"):
        read_curves(tmp_path / "metrics.jsonl", {"accuracy": "rollout_all/accuracy"})


def test_a_missing_model_folder_is_named_before_anything_loads(tmp_path):
    from pgpo.cli import main

    missing = str(tmp_path / "nowhere")
    with pytest.raises(SystemExit, match=f"pgpo testbed gates: --checkpoint {missing}: no such directory"):
        main(["testbed", "gates", "--checkpoint", missing, "--data", str(tmp_path), "--variant", "r2", "--spec", "{}",
              "--report", str(tmp_path / "r.json"), "--out", str(tmp_path / "g.json")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="warm-start: --model .*empty: no config.json there"):
        main(["testbed", "warm-start", "--model", str(tmp_path / "empty"), "--data", str(tmp_path), "--variant", "r2",
              "--out", str(tmp_path / "ws")])
