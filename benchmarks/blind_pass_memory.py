"""Peak memory and time of the PGPO blind pass at paper shapes, side by side with TRL's own log-prob pass.

One process, one batch, one run of each pass (not a timed test: ratios measured side by side). The model is a
shape-faithful Qwen2.5-VL built offline with random weights: the real vocabulary (151,936), few narrow layers, one
image of ~1,000 visual tokens per row, T = 2048 completion tokens, micro-batch 2 (rows with different prompt and
completion padding, as TRL lays them out). The LM head is what the memory is about: at V = 151,936 the logits
of one row are 1.2 GB in fp32, whatever the hidden size.

Passes (all without gradient, on the same batch):
- trl_own: TRL 1.16's GRPOTrainer._get_per_token_logps_and_entropies (the trainer's image-conditioned log-probs)
  on a model with TRL's fused LM head, called unbound with a stand-in `self` that holds a real Accelerator.
- blind_new: pgpo.training.blind_forward.blind_forward as the trainer calls it (fused head, visual columns dropped).
- blind_new_masked: the same with the visual tokens masked in place instead of dropped.
- blind_old: the replaced implementation (full [B,T+1,V] logits + fp32 log_softmax), kept here as the reference.
- full_kl: the image pass's and the blind pass's final hidden states, then pgpo.methods.dependency.full_kl (256 tokens a
  chunk).
Peak memory: on CPU the process RSS sampled every millisecond by a thread, minus the RSS just before the pass
(freed memory is returned to the OS with malloc_trim first); on CUDA torch.cuda.max_memory_allocated minus the
allocation before the pass.

    python benchmarks/blind_pass_memory.py            # CPU, fp32: several GB at the old pass's peak
    python benchmarks/blind_pass_memory.py --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import threading
import time
import types

import torch

IMAGE, VIDEO, V_START, V_END, PAD, EOS = 151655, 151656, 151652, 151653, 151643, 151645  # Qwen2.5-VL's ids


def shape_faithful_model(vocab: int, hidden: int, layers: int, dtype):
    """Qwen2.5-VL with the real vocabulary and token ids, `layers` text layers of width `hidden`, a 1-block
    vision tower (its cost is not what is measured), random weights."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    heads, head_dim = hidden // 64, 64
    text = {"vocab_size": vocab, "hidden_size": hidden, "intermediate_size": 4 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": max(1, heads // 2),
            "max_position_embeddings": 32768, "tie_word_embeddings": True, "eos_token_id": EOS, "pad_token_id": PAD,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                                "mrope_section": [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16]}}
    vision = {"depth": 1, "hidden_size": 64, "num_heads": 2, "intermediate_size": 128, "out_hidden_size": hidden,
              "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
              "fullatt_block_indexes": [0]}
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, pad_token_id=PAD,
                              eos_token_id=EOS, image_token_id=IMAGE, video_token_id=VIDEO,
                              vision_start_token_id=V_START, vision_end_token_id=V_END)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(config).to(dtype).eval()


def paper_batch(t: int, grid: tuple[int, int, int], device):
    """2 rows, TRL's layout: [left pad | text | <vision_start> image pads <vision_end> | text | completion | pad].
    Row 0: long prompt, full completion; row 1: shorter prompt (left-padded), completion of 0.8 T (right-padded)."""
    g = torch.Generator().manual_seed(0)
    n_image = grid[0] * grid[1] * grid[2] // 4
    text = lambda n: torch.randint(0, 151000, (n,), generator=g)
    prompts = [torch.cat([text(n0), torch.tensor([V_START]), torch.full((n_image,), IMAGE), torch.tensor([V_END]),
                          text(n1)]) for n0, n1 in ((60, 40), (30, 20))]
    width = max(len(p) for p in prompts)
    valid = [t, int(0.8 * t)]
    ids, attention = [], []
    for p, n in zip(prompts, valid):
        comp = torch.cat([text(n), torch.full((t - n,), PAD)])
        ids.append(torch.cat([torch.full((width - len(p),), PAD), p, comp]))
        attention.append(torch.cat([torch.zeros(width - len(p)), torch.ones(len(p) + n), torch.zeros(t - n)]))
    ids, attention = torch.stack(ids), torch.stack(attention).long()
    mm = (ids == IMAGE).long()
    grids = torch.tensor([grid, grid])
    pixels = torch.randn(2 * grid[0] * grid[1] * grid[2], 3 * 2 * 14 * 14, generator=g)
    batch = {"ids": ids, "attention": attention, "mm": mm, "grids": grids, "pixels": pixels}
    return {k: v.to(device) for k, v in batch.items()}


class PeakMemory:
    """Peak memory of the block above the memory just before it (bytes): RSS sampling on CPU, allocator on CUDA."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.peak = 0

    @staticmethod
    def _rss() -> int:
        import psutil

        return psutil.Process().memory_info().rss

    def __enter__(self):
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        try:  # give freed heap back to the OS so the baseline is the live memory
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self.base = self._rss()
        self.top, self.running = self.base, True

        def sample():
            while self.running:
                self.top = max(self.top, self._rss())
                time.sleep(0.001)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
            return
        self.running = False
        self.thread.join()
        self.peak = max(self.top, self._rss()) - self.base


def old_blind_forward(model, ids, attention, mm, grids, t, temperature=1.0):
    """The replaced pgpo implementation: visual tokens masked in place, full-vocabulary logits."""
    from pgpo.methods.dependency import completion_logprobs, visual_span_mask
    from pgpo.models.blind_sequence import mrope_position_ids

    cfg = model.config
    pos = mrope_position_ids(model, ids, attention, mm, grids)
    vis = visual_span_mask(ids, mm, cfg.vision_start_token_id, cfg.vision_end_token_id)
    out = model(input_ids=ids, attention_mask=attention * (~vis).long(), position_ids=pos, logits_to_keep=t + 1,
                use_cache=False)
    return completion_logprobs(out.logits[:, :-1], ids[:, -t:], temperature)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=151936)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--completion", type=int, default=2048)
    p.add_argument("--grid", default="1,46,88", help="image grid t,h,w (patches); visual tokens = t*h*w/4")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-old", action="store_true", help="skip the full-logits reference (its peak is large)")
    p.add_argument("--json", help="also write the result here")
    a = p.parse_args()

    from accelerate import Accelerator
    from trl import GRPOTrainer
    from trl.trainer.utils import add_fused_lm_head

    from pgpo.methods.dependency import full_kl
    from pgpo.models.blind_sequence import blind_hidden_states, completion_hidden_states, mrope_position_ids
    from pgpo.training.blind_forward import blind_forward

    torch.set_num_threads(a.threads)
    device, dtype = torch.device(a.device), getattr(torch, a.dtype)
    grid = tuple(int(x) for x in a.grid.split(","))
    model = shape_faithful_model(a.vocab, a.hidden, a.layers, dtype).to(device)
    # what GRPOTrainer.__init__ installs on the policy (same temperature and outputs)
    add_fused_lm_head(model, temperature=1.0, outputs=("log_probs", "entropy"))
    stand_in = types.SimpleNamespace(accelerator=Accelerator(cpu=device.type == "cpu"))
    b = paper_batch(a.completion, grid, device)
    t = a.completion
    valid = b["attention"][:, -t:].bool()
    inputs = (b["ids"], b["attention"], b["mm"], b["grids"])

    def trl_own():
        return GRPOTrainer._get_per_token_logps_and_entropies(
            stand_in, model, b["ids"], b["attention"], t, batch_size=2, pixel_values=b["pixels"],
            image_grid_thw=b["grids"], num_images=[1, 1], mm_token_type_ids=b["mm"])[0]

    def with_full_kl():
        pos = mrope_position_ids(model, *inputs)
        h_image = completion_hidden_states(model, t, input_ids=b["ids"], attention_mask=b["attention"],
                                           position_ids=pos, pixel_values=b["pixels"], image_grid_thw=b["grids"],
                                           mm_token_type_ids=b["mm"])
        h_blind = blind_hidden_states(model, *inputs, t)
        return full_kl(h_image, h_blind, model.get_output_embeddings(), valid, chunk=256)

    passes = {"trl_own": trl_own,
              "blind_new": lambda: blind_forward(model, *inputs, t),
              "blind_new_masked": lambda: blind_forward(model, *inputs, t, drop=False),
              "blind_old": lambda: old_blind_forward(model, *inputs, t),
              "full_kl": with_full_kl}
    if a.skip_old:
        passes.pop("blind_old")
    rows, outputs = {}, {}
    with torch.no_grad():
        for name, fn in passes.items():
            meter = PeakMemory(device)
            with meter:
                start = time.perf_counter()
                out = fn()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - start
            outputs[name] = out.float().cpu()
            rows[name] = {"seconds": seconds, "peak_gb": meter.peak / 2**30}
            del out
    base = rows["trl_own"]
    for r in rows.values():
        r["peak_over_trl"] = r["peak_gb"] / base["peak_gb"]
        r["time_over_trl"] = r["seconds"] / base["seconds"]
    v = valid.cpu()
    checks = {"max|blind_new - blind_new_masked|": (outputs["blind_new"] - outputs["blind_new_masked"])[v].abs().max()}
    if "blind_old" in outputs:
        checks["max|blind_new - blind_old|"] = (outputs["blind_new"] - outputs["blind_old"])[v].abs().max()
    meter_kind = "CUDA max_memory_allocated" if device.type == "cuda" else "RSS peak (1 ms sampling)"
    print(f"V={a.vocab} hidden={a.hidden} layers={a.layers} T={t} visual tokens/row={grid[0] * grid[1] * grid[2] // 4}"
          f" micro-batch=2 L={b['ids'].size(1)} device={a.device} dtype={a.dtype} threads={a.threads}")
    print(f"peak memory = {meter_kind} above the memory before the pass")
    print(f"{'pass':<18}{'seconds':>9}{'peak GB':>10}{'peak/TRL':>10}{'time/TRL':>10}")
    for name, r in rows.items():
        print(f"{name:<18}{r['seconds']:>9.2f}{r['peak_gb']:>10.3f}{r['peak_over_trl']:>10.2f}"
              f"{r['time_over_trl']:>10.2f}")
    for name, value in checks.items():
        print(f"{name} on valid tokens: {value.item():.2e}")
    target = rows["blind_new"]["peak_over_trl"]
    print(f"target blind-pass peak <= 1.2 x TRL's own: {target:.2f} x -> {'met' if target <= 1.2 else 'NOT met'}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "checks": {k: float(v) for k, v in checks.items()}, "meter": meter_kind}, f,
                      indent=2)


if __name__ == "__main__":
    main()
