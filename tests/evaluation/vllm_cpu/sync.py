"""Test-only: TRL's colocated weight sync, made to work on vLLM's CPU build.

TRL 1.16 pushes each parameter through `model.load_weights([(name, tensor)])` of the engine's model. vLLM-CPU packs
every linear weight for its CPU GEMM at load time (`dispatch_cpu_unquantized_gemm(..., remove_weight=True)`), so
the loader finds no `weight_loader` on the packed parameters and the first sync fails ('Parameter' object has no
attribute 'weight_loader'); no VLLM_CPU_* setting avoids it. vLLM's own `reload_weights` (checkpoint format)
re-runs the loading and the packing; a tied LM head shares the embedding's weight but keeps its own packed copy,
which must be re-packed; and the encoder, multimodal and prefix caches hold outputs of the old weights.
The GPU path is TRL's own and untouched: this adapter is installed only by the vllm_cpu tests.
"""

from __future__ import annotations


def cpu_sync_weights(generation) -> None:
    """TRL's VLLMGeneration.sync_weights for a colocated vLLM-CPU engine: the trainer's current weights, under the
    names TRL's own iterator gives vLLM, reloaded through vLLM's loader."""
    weights = [(name, tensor.detach().clone()) for name, tensor in generation._iter_named_params()]
    llm = generation.llm
    worker = llm.llm_engine.model_executor.driver_worker
    runner = worker.model_runner
    runner.reload_weights(weights_iterator=iter(weights), is_checkpoint_format=True)
    model = runner.get_model()
    if runner.model_config.hf_config.get_text_config().tie_word_embeddings:
        for name, module in model.named_modules():
            if name.endswith("lm_head") and getattr(module, "quant_method", None) is not None:
                module.quant_method.process_weights_after_loading(module)
    llm.reset_prefix_cache()
    llm.reset_mm_cache()
    llm.llm_engine.reset_encoder_cache()


def install() -> None:
    """Every VLLMGeneration of this process syncs with cpu_sync_weights."""
    from trl.generation.vllm_generation import VLLMGeneration

    VLLMGeneration.sync_weights = cpu_sync_weights
