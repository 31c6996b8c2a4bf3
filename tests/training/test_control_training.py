"""The control shapers and the credit statistics in real TRL steps on the tiny Qwen2.5-VL (issue 21): two training
steps of each control method, the answer statistics on a rollout whose completions carry boxed answers, the
placebo shaped in micro-batches, and rollout_all over every dynamic-sampling round."""

import json

import pytest
import torch
from signal_rewards import RECORD, signal

from pgpo.config.schema import REPO, load_method, load_train_config

pytestmark = pytest.mark.slow
ORACLE = REPO / "baselines/variants/dapo_oracle.yaml"
PLACEBO = REPO / "baselines/variants/dapo_placebo.yaml"
CREDIT = ("rollout_all/accuracy", "rollout_all/format", "credit/answer_share", "entropy/non_answer")


def _cfg(tiny_dir, tiny_data, **over):
    raw = {"model": {"path": str(tiny_dir)}, "data": {"train": str(tiny_data / "train.jsonl")},
           "rollout": {"prompts_per_step": 4, "update_prompts": 4, "num_generations": 4, "max_completion_length": 8},
           "micro_batch": 16, "max_steps": 2, "save_steps": 100}
    raw.update(over)
    return load_train_config(REPO / "workflows/config/train/tiny.yaml", raw)


def _trainer(tiny_dir, tiny_data, out, method, **over):
    from pgpo.training.run import build_trainer

    t = build_trainer(_cfg(tiny_dir, tiny_data, **over), method, out)
    t.current_gradient_accumulation_steps = t.args.gradient_accumulation_steps  # set by train()
    t.model.train()
    return t


def _rows(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("path, own", [(ORACLE, "oracle/no_answer_fraction"), (PLACEBO, "placebo/moved_fraction")])
def test_control_methods_train_two_steps_and_log_the_credit_statistics(tiny_dir, tiny_data, tmp_path, monkeypatch,
                                                                      path, own):
    from transformers import AutoModelForImageTextToText

    from pgpo.training.run import train

    run = train(_cfg(tiny_dir, tiny_data, rewards=signal()), load_method(path), tmp_path / "run")
    assert run.global_steps == 2 and run.method["name"] == path.stem
    rows = _rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        missing = {*CREDIT, own} - set(row)
        assert not missing, missing
        assert row["rollout_all/format"] == 1.0 and 0.0 <= row["credit/answer_share"] <= 1.0
    assert any(r["loss"] != 0.0 for r in rows)  # groups with signal: a real update
    if path == ORACLE:  # the untrained model boxes nothing: every response keeps the plain advantage
        assert rows[0]["oracle/no_answer_fraction"] == 1.0 and rows[0]["credit/answer_share"] == 0.0
    else:
        assert rows[0]["placebo/moved_fraction"] > 0.0
    trained = AutoModelForImageTextToText.from_pretrained(tmp_path / "run" / "final").state_dict()
    start = AutoModelForImageTextToText.from_pretrained(tiny_dir).state_dict()
    assert any(not torch.equal(trained[k], start[k]) for k in start)


# -- a rollout whose completions carry a boxed answer -----------------------------------------------------------
@pytest.fixture(scope="module")
def boxed_rollout(tiny_dir, tiny_data, tmp_path_factory):
    """A raw TRL rollout (4 prompts x 4) whose completions are replaced by texts with a \\boxed{} answer (two
    without one), and non-trivial sequence advantages."""
    from trl import GRPOTrainer

    t = _trainer(tiny_dir, tiny_data, tmp_path_factory.mktemp("boxed"), load_method("dapo"),
                 rollout={"prompts_per_step": 4, "update_prompts": 4, "num_generations": 4,
                          "max_completion_length": 24})
    rows = [t.train_dataset[i] for i in range(4) for _ in range(4)]
    out = GRPOTrainer._generate_and_score_completions(t, rows)
    tok = t.processing_class.tokenizer
    texts = ["<think>I look.</think>\\boxed{3}", "<think>I count.</think>\\boxed{12}", "<think>none</think>",
             "\\boxed{red}"] * 4
    texts[6] = "<think>I read the digit.</think>no box"
    width = out["completion_ids"].size(1)
    ids = torch.full((16, width), tok.pad_token_id)
    mask = torch.zeros(16, width, dtype=out["completion_mask"].dtype)
    for i, text in enumerate(texts):
        enc = tok(text + "<|im_end|>", add_special_tokens=False)["input_ids"]
        assert len(enc) <= width, (text, len(enc), width)
        ids[i, :len(enc)] = torch.tensor(enc)
        mask[i, :len(enc)] = 1
    out.update(completion_ids=ids, completion_mask=mask, num_items_in_batch=mask.sum())
    out["advantages"] = torch.randn(16, generator=torch.Generator().manual_seed(0))
    return out, rows, texts


def _entropies(trainer, batch):
    """TRL's per-token entropies of the batch's completions (the loss forward's, recomputed)."""
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with torch.no_grad():
        _, entropies, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, attention, batch["completion_ids"].size(1), batch_size=16, compute_entropy=True,
            pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"],
            mm_token_type_ids=batch["mm_token_type_ids"], num_images=batch.get("num_images"))
    return entropies


def test_answer_statistics_on_boxed_completions(tiny_dir, tiny_data, tmp_path, boxed_rollout):
    from pgpo.methods.answer_span import answer_token_mask

    out, rows, texts = boxed_rollout
    tok_mask = out["completion_mask"].bool()
    for method in (load_method("dapo"), load_method(ORACLE)):
        trainer = _trainer(tiny_dir, tiny_data, tmp_path / method.name, method,
                           rollout={"prompts_per_step": 4, "update_prompts": 4, "num_generations": 4,
                                    "max_completion_length": 24})
        shaped = trainer._shape_advantages({**out, "rows": list(rows)}, "train")
        answer = shaped["answer_mask"]
        assert torch.equal(answer, answer_token_mask(out["completion_ids"], out["completion_mask"],
                                                     trainer.processing_class.tokenizer))
        no_box = [i for i, t in enumerate(texts) if "boxed" not in t]
        assert not answer[no_box].any() and answer.sum(-1)[[0, 1, 3]].gt(0).all()
        adv = shaped["advantages"]
        share = trainer._metrics["train"]["credit/answer_share"][-1]
        mass = adv.abs() * tok_mask
        if method.name == "dapo":
            expected = (out["advantages"].abs()[:, None] * (answer & tok_mask)).sum() / (
                out["advantages"].abs()[:, None] * tok_mask).sum()
            assert share == pytest.approx(expected.item(), rel=1e-5) and share < 0.5
        else:
            has = answer.any(-1)
            assert (adv[has][~answer[has]] == 0).all()  # the oracle: nothing off the answer where there is one
            assert torch.allclose(adv.sum(-1), out["advantages"] * tok_mask.sum(-1), atol=1e-4)
            expected = (mass * answer).sum() / mass.sum()  # the two boxless responses keep their plain advantage
            assert share == pytest.approx(expected.item(), rel=1e-5) and 0.5 < share < 1.0
            assert trainer._metrics["train"]["oracle/no_answer_responses"][-1] == len(no_box)
        trainer._compute_loss(trainer.model, shaped)
        entropies = _entropies(trainer, shaped)
        m = trainer._metrics["train"]
        assert m["entropy/answer"][-1] == pytest.approx(entropies[answer & tok_mask].mean().item(), rel=1e-4)
        assert m["entropy/non_answer"][-1] == pytest.approx(entropies[~answer & tok_mask].mean().item(), rel=1e-4)


def test_placebo_shaped_in_micro_batches_equals_the_whole_batch(tiny_dir, tiny_data, tmp_path, boxed_rollout):
    """Deferred to the loss, the placebo shapes each micro-batch with its rows' own seeds: the token advantages of
    every response are those of shaping the whole batch, whatever TRL's shuffle and split, and so is the gradient."""
    from trl.trainer.utils import (
        shuffle_sequence_dict,
        split_pixel_values_by_grid,
        split_tensor_dict,
        unsplit_pixel_values_by_grid,
    )

    out, rows, _ = boxed_rollout
    advantages, grads = {}, {}
    for micro in (16, 4):
        trainer = _trainer(tiny_dir, tiny_data, tmp_path / f"m{micro}", load_method(PLACEBO), micro_batch=micro,
                           rollout={"prompts_per_step": 4, "update_prompts": 4, "num_generations": 4,
                                    "max_completion_length": 24})
        shaped = trainer._shape_advantages({**out, "rows": list(rows)}, "train")
        assert "blind_logps" in shaped and shaped["advantages"].dim() == 1  # deferred: shaped in the loss
        shaped["row"] = torch.arange(16)
        torch.manual_seed(micro)
        chunks = split_tensor_dict(shuffle_sequence_dict(split_pixel_values_by_grid(shaped)), 16 // micro)
        seen = torch.zeros(16, shaped["completion_ids"].size(1))
        trainer.model.zero_grad(set_to_none=True)
        for chunk in chunks:
            chunk = unsplit_pixel_values_by_grid(chunk)
            trainer._compute_loss(trainer.model, chunk).backward()
            seen[chunk["row"]] = chunk["advantages"]
        grads[micro] = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
        advantages[micro] = seen
    # equal up to the float noise of the loss forward's log-probs at another batch size (S comes from them); a
    # different permutation would move whole weights
    assert torch.allclose(advantages[4], advantages[16], atol=1e-5)
    assert ((grads[4] - grads[16]).norm() / grads[16].norm()).item() < 1e-4 and grads[16].norm() > 0
    plain = out["advantages"][:, None] * out["completion_mask"]
    assert not torch.allclose(advantages[16], plain)  # the weights moved something


def test_rollout_all_is_the_mean_over_every_dynamic_sampling_round(tiny_dir, tiny_data, tmp_path, monkeypatch):
    RECORD.clear()
    record = RECORD
    trainer = _trainer(tiny_dir, tiny_data, tmp_path, load_method("dapo"), rewards=signal())
    rows = [trainer.train_dataset[i] for i in range(4) for _ in range(4)]  # tasks count, colour, bars, digit
    trainer.generation_step(rows)
    m = trainer._metrics["train"]
    rounds = int(m["dynamic_sampling/rounds"][-1])
    assert rounds > 1 and len(record) == rounds  # only the count groups have signal: refills were drawn
    every = [v for values in record for v in values]
    logged = m["rollout_all/accuracy"]
    assert len(logged) == rounds and sum(logged) / rounds == pytest.approx(sum(every) / len(every))
    assert m["rollout_all/format"] == [1.0] * rounds
    # TRL's own per-rollout reward mean agrees (it also runs once per round)
    assert logged == pytest.approx(m["rewards/accuracy_reward/mean"][-rounds:])
