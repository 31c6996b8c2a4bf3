"""PAPO and VPPO on real TRL rollouts of the tiny Qwen2.5-VL: the blind view, micro-batch invariance, loss terms."""

import pytest
import torch

from pgpo.config.schema import REPO, load_method, load_train_config

pytestmark = pytest.mark.slow
ROWS = 16  # 4 prompts x 4 completions


def _cfg(tiny_dir, tiny_data, micro_batch=8):
    return load_train_config(REPO / "workflows/config/train/tiny.yaml", {
        "model": {"path": str(tiny_dir)}, "data": {"train": str(tiny_data / "train.jsonl")},
        "rollout": {"prompts_per_step": 4, "update_prompts": 4, "num_generations": 4, "max_completion_length": 8},
        "micro_batch": micro_batch, "max_steps": 1})


def _trainer(tiny_dir, tiny_data, tmp_path, method, micro_batch=8):
    from pgpo.training.run import build_trainer

    t = build_trainer(_cfg(tiny_dir, tiny_data, micro_batch), method, tmp_path / f"{method.name}-{micro_batch}")
    t.current_gradient_accumulation_steps = t.args.gradient_accumulation_steps  # set by train()
    t.model.train()
    return t


@pytest.fixture(scope="module")
def rollout(tiny_dir, tiny_data, tmp_path_factory):
    """One raw TRL rollout of 16 completions (before shaping), its dataset rows, and non-trivial advantages."""
    from trl import GRPOTrainer

    t = _trainer(tiny_dir, tiny_data, tmp_path_factory.mktemp("rollout"), load_method("dapo"))
    rows = [t.train_dataset[i] for i in range(4) for _ in range(4)]
    out = GRPOTrainer._generate_and_score_completions(t, rows)
    out["advantages"] = torch.randn(ROWS, generator=torch.Generator().manual_seed(0))
    return out, rows


def _shaped(trainer, rollout):
    out, rows = rollout
    return trainer._shape_advantages({**out, "rows": list(rows)}, "train")


def _accumulated_grad(trainer, shaped, micro):
    """The gradient of one update, accumulated over micro-batches exactly as TRL splits the generation batch."""
    from trl.trainer.utils import split_pixel_values_by_grid, split_tensor_dict, unsplit_pixel_values_by_grid

    chunks = split_tensor_dict(split_pixel_values_by_grid(shaped), ROWS // micro)
    trainer.model.zero_grad(set_to_none=True)
    for chunk in chunks:
        trainer._compute_loss(trainer.model, unsplit_pixel_values_by_grid(chunk)).backward()
    grad = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
    trainer.model.zero_grad(set_to_none=True)
    return grad


def test_vppo_is_identical_for_micro_batches_of_1_2_and_4(tiny_dir, tiny_data, tmp_path, rollout):
    advantages, grads, dependency = {}, {}, {}
    for micro in (1, 2, 4):
        trainer = _trainer(tiny_dir, tiny_data, tmp_path, load_method("vppo"), micro)
        shaped = _shaped(trainer, rollout)
        advantages[micro] = shaped["advantages"]
        dependency[micro] = trainer._metrics["train"]["dependency/mean"][-1]
        grads[micro] = _accumulated_grad(trainer, shaped, micro)
    assert (advantages[1] != 0).sum() > 0 and grads[1].abs().sum() > 0
    for micro in (2, 4):
        assert torch.allclose(advantages[micro], advantages[1], atol=1e-6)
        assert dependency[micro] == pytest.approx(dependency[1], rel=1e-5)
        assert torch.allclose(grads[micro], grads[1], rtol=1e-4, atol=1e-8)


def test_patch_blackening_reprocesses_the_rollout_images_exactly(tiny_dir, tiny_data, tmp_path, rollout):
    """p = 0 must give back the rollout's own log-probs (same preprocessing, same token layout): S = 0 everywhere.
    p = 1 (all black) must not."""
    clear = _trainer(tiny_dir, tiny_data, tmp_path, load_method("vppo", {"blind_view": {"params": {"p": 0.0}}}))
    _shaped(clear, rollout)
    m = clear._metrics["train"]
    assert m["blind/blackened_fraction"][-1] == 0.0 and m["dependency/max"][-1] < 1e-4
    black = _trainer(tiny_dir, tiny_data, tmp_path, load_method("vppo", {"blind_view": {"params": {"p": 1.0}}}))
    _shaped(black, rollout)
    m = black._metrics["train"]
    assert m["blind/blackened_fraction"][-1] == 1.0 and m["dependency/mean"][-1] > 1e-3


def test_patch_blackening_masks_per_prompt_or_per_response(tiny_dir, tiny_data, tmp_path, rollout):
    """PAPO (one mask per prompt): the G completions of a prompt share the blind pixels; VPPO: each its own."""
    from pgpo.methods.blind import BlindInputs, patch_blackening_view
    from pgpo.training.blind_forward import blind_forward

    out, rows = rollout
    seen = {}

    def forward(pixel_values):
        seen["pixels"] = pixel_values
        return torch.zeros_like(out["completion_mask"], dtype=torch.float32)

    trainer = _trainer(tiny_dir, tiny_data, tmp_path, load_method("papo"))
    view = trainer.blind_view.make_params({"p": 0.5, "per": "prompt"})
    inputs = BlindInputs(model=trainer.model, batch=out, rows=rows, group_size=4, step=3, seed=0, temperature=1.0,
                         micro_batch=8, forward=forward, blind_forward=blind_forward,
                         image_processor=trainer.processing_class.image_processor)
    patch_blackening_view(inputs, view)
    per_row = seen["pixels"].view(ROWS, -1, seen["pixels"].size(-1))
    assert all(torch.equal(per_row[0], per_row[j]) for j in range(1, 4))
    assert not torch.equal(per_row[0], per_row[4])  # another prompt (and image): another mask
    patch_blackening_view(inputs, trainer.blind_view.make_params({"p": 0.5, "per": "response"}))
    per_row = seen["pixels"].view(ROWS, -1, seen["pixels"].size(-1))
    assert not all(torch.equal(per_row[0], per_row[j]) for j in range(1, 4))
    again = dict(seen)
    patch_blackening_view(inputs, trainer.blind_view.make_params({"p": 0.5, "per": "response"}))
    assert torch.equal(again["pixels"], seen["pixels"])  # same (seed, prompt id, step): same masks


def test_papo_terms_add_gradient_without_touching_the_masked_branch(tiny_dir, tiny_data, tmp_path, rollout):
    trainer = _trainer(tiny_dir, tiny_data, tmp_path, load_method("papo"))
    shaped = _shaped(trainer, rollout)
    assert not shaped["blind_logps"].requires_grad and shaped["blind_logps"].shape == shaped["completion_mask"].shape
    with_terms = _accumulated_grad(trainer, shaped, 8)
    terms, trainer.loss_terms = trainer.loss_terms, []
    plain = _accumulated_grad(trainer, shaped, 8)
    trainer.loss_terms = terms
    assert not torch.allclose(with_terms, plain, atol=1e-7)
    assert trainer._metrics["train"]["loss_terms/perception_kl"][-1] > 0
