"""`pgpo_vlm`: the project's lmms-eval model class (registered through the `lmms_eval.models` entry point).

Loads a local checkpoint directory (or hub id) with transformers and samples with exactly the training prompt
(system prompt, images before the text, the checkpoint's chat template and pixel budget). CPU or GPU; several
GPUs by data parallelism under `accelerate launch`. Every sampling parameter is set explicitly, so a checkpoint's
generation_config.json (Qwen2.5-VL ships top_k=1, repetition_penalty=1.05) cannot change the protocol.
A batch that fails is retried item by item; an item that still fails yields a response starting with
FAILED_PREFIX, which the scorer counts as failed (score 0, listed) instead of grading it.
"""

from __future__ import annotations

import sys

from lmms_eval.api.model import lmms  # unlike lmms_eval.models, this does not load the entry points
from loguru import logger

from pgpo.evaluation.docs import FAILED_PREFIX
from pgpo.util.progress import progress_bar
from pgpo.data.prompts import chat_messages

MODEL_ID = "pgpo_vlm"
CLASS_PATH = "pgpo.evaluation.lmms_model.PGPOVisionLanguageModel"


def model_manifests() -> list:
    """Our lmms-eval registration; lmms-eval calls it while `lmms_eval.models` initialises (entry point payload).

    A callable, and ModelManifest imported here, because importing lmms_eval.models runs that initialisation:
    a module-level manifest made importing this module first register nothing (the entry point found it half
    imported; lmms-eval logs a warning and goes on). lmms-eval 0.7's `lmms-eval models` lists only its built-in
    name table, not the registry entry points fill: the id is added to that table too."""
    from lmms_eval.models.registry_v2 import ModelManifest

    models = sys.modules.get("lmms_eval.models")  # half initialised here; its name tables already exist
    if models is not None and hasattr(models, "AVAILABLE_SIMPLE_MODELS"):
        models.AVAILABLE_SIMPLE_MODELS.setdefault(MODEL_ID, CLASS_PATH)
    return [ModelManifest(model_id=MODEL_ID, simple_class_path=CLASS_PATH)]


MANIFESTS = model_manifests  # the entry point's target (pyproject.toml): changing the name needs a reinstall


class PGPOVisionLanguageModel(lmms):
    """Sampling from a Qwen2.5-VL checkpoint with the training prompt; model_args mirror pgpo's EvalConfig."""

    is_simple = True

    def __init__(self, pretrained: str, device: str = "cpu", dtype: str = "float32", batch_size: int = 8,
                 attn_implementation: str = "sdpa", min_pixels: int | None = None, max_pixels: int | None = None,
                 seed: int = 0, threads: int = 0, **kwargs) -> None:
        super().__init__()
        import torch
        from accelerate import Accelerator

        from pgpo.models.loading import load_model
        from pgpo.models.processor import load_processor

        if kwargs:
            raise ValueError(f"pgpo_vlm: unknown model_args {sorted(kwargs)}")
        if int(threads) > 0:
            torch.set_num_threads(int(threads))
        # lmms-eval gathers request counts through self.accelerator on self.device when several processes run
        self.accelerator = Accelerator(cpu=not str(device).startswith("cuda"))
        self._rank, self._world_size = self.accelerator.process_index, self.accelerator.num_processes
        several_gpus = self._world_size > 1 and str(device).startswith("cuda")
        self._device = torch.device(f"cuda:{self.accelerator.local_process_index}" if several_gpus else device)
        self.processor = load_processor(pretrained, min_pixels=min_pixels, max_pixels=max_pixels)
        self.processor.tokenizer.padding_side = "left"
        # shared prefill: a question's k copies are consecutive, one prefill serves them
        self.model = load_model(pretrained, dtype, attn_implementation, fast_attention=True, shared_prefill=True,
                                eval_mode=True).to(self._device)
        self.batch_size = int(batch_size)
        # one generator per rank: sampling is reproducible for a given seed, batch size and request order
        self._generator_seed = int(seed) + self._rank

    @property
    def device(self):
        return self._device

    def _prompt(self, context: str, n_images: int) -> str:
        return self.processor.apply_chat_template(chat_messages(context, range(n_images)), add_generation_prompt=True,
                                                  tokenize=False)

    def _generation_config(self, gen_kwargs: dict):
        from transformers import GenerationConfig

        temperature = float(gen_kwargs.get("temperature", 0.0))
        sample = temperature > 0
        tok = self.processor.tokenizer
        return GenerationConfig(
            do_sample=sample, temperature=temperature if sample else None,
            top_p=float(gen_kwargs.get("top_p", 1.0)) if sample else None, top_k=0 if sample else None,
            repetition_penalty=1.0, max_new_tokens=int(gen_kwargs.get("max_new_tokens", 2048)),
            eos_token_id=self.model.generation_config.eos_token_id or tok.eos_token_id,
            pad_token_id=tok.pad_token_id)

    def _generate(self, items: list[tuple[str, list]], gen_config) -> list[str]:
        import torch

        texts = [self._prompt(ctx, len(images)) for ctx, images in items]
        images = [im for _, ims in items for im in ims] or None
        enc = self.processor(text=texts, images=images, padding=True, return_tensors="pt").to(self._device)
        with torch.no_grad():
            out = self.model.generate(**enc, generation_config=gen_config)
        return self.processor.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)

    def _generate_or_retry(self, items: list[tuple[str, list]], config) -> list[str]:
        if not items:
            return []
        try:
            return self._generate(items, config)
        except Exception as e:
            logger.warning(f"pgpo_vlm: batch failed ({type(e).__name__}: {e}); retrying its items one by one")
        texts = []
        for item in items:
            try:
                texts += self._generate([item], config)
            except Exception as e:
                texts.append(f"{FAILED_PREFIX}{type(e).__name__}: {e}")
        return texts

    def generate_until(self, requests) -> list[str]:
        import torch

        torch.manual_seed(self._generator_seed)
        # a question's k copies are consecutive (lmms-eval clones requests); batches never straddle two tasks,
        # so one batch has one set of generation kwargs
        order = sorted(range(len(requests)), key=lambda i: (str(requests[i].args[4]), requests[i].args[3]))
        batches, current = [], []
        for i in order:
            if current and (len(current) == self.batch_size or requests[i].args[4] != requests[current[0]].args[4]):
                batches.append(current)
                current = []
            current.append(i)
        batches += [current] if current else []
        out: list[str | None] = [None] * len(requests)
        bar = progress_bar(len(requests), "pgpo_vlm sampling", "request", disable=self.rank != 0)  # tqdm on a TTY
        for idx in batches:
            context, gen_kwargs, *_ = requests[idx[0]].args
            config = self._generation_config(gen_kwargs)
            items = {}
            for i in idx:
                context, _, doc_to_visual, doc_id, task, split = requests[i].args
                try:
                    items[i] = (context, doc_to_visual(self.task_dict[task][split][doc_id]))
                except Exception as e:  # a broken image is this item's failure, not the run's
                    out[i] = f"{FAILED_PREFIX}{type(e).__name__}: {e}"
            for i, text in zip(items, self._generate_or_retry(list(items.values()), config)):
                out[i] = text
            bar.update(len(idx))
        bar.close()
        failed = sum(o.startswith(FAILED_PREFIX) for o in out)
        if failed and failed == len(out):
            raise RuntimeError(f"pgpo_vlm: every generation failed; first: {out[0]}")
        if failed:
            logger.warning(f"pgpo_vlm: {failed} of {len(out)} generations failed (counted by the scorer)")
        return out

    def clean(self):
        """Keep the model: lmms-eval calls clean() after each evaluation (deleting nn.Module attributes) and pgpo
        evaluates every benchmark of a table with one loaded model; memory is freed when the process ends."""

    def loglikelihood(self, requests):
        raise NotImplementedError("pgpo_vlm only generates (the pgpo_ tasks are generate_until)")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("pgpo_vlm only generates single-turn answers")
