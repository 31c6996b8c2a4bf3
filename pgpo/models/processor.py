"""Loading the Qwen2.5-VL processor (tokenizer + chat template + image processor) the same way everywhere.

Every place that loads a processor (training, warm start, probe, the `pgpo_vlm` evaluation model) calls
load_processor, so they all get the same tokenizer, chat template and pixel budget for a checkpoint.

Why this exists: the first hub release of Qwen2.5-VL (and checkpoints copied from it) names its image processor
``"image_processor_type": "Qwen2_5_VLImageProcessor"`` in preprocessor_config.json. No such class ever shipped in
transformers (Qwen2.5-VL uses Qwen2VLImageProcessor; the hub file was corrected later), and transformers 5 refuses
the file with "Unrecognized image processor ... Should have a `image_processor_type` key", which names neither the
bad value nor the fix. Known renames are loaded with the right class; any other unknown name is refused with a
message that says which file and key to change.
"""

from __future__ import annotations

from pgpo.util.errors import UserError

# image_processor_type values written by early releases -> the transformers class that processes those images
FIRST_RELEASE_IMAGE_PROCESSORS = {"Qwen2_5_VLImageProcessor": "Qwen2VLImageProcessor"}


class ProcessorError(UserError, ValueError):
    """A checkpoint's processor files cannot be loaded; the message names the file, the key and the fix."""


def _preprocessor_config(path: str, revision: str | None) -> tuple[str, dict]:
    """(file name, image-processor settings) of a local directory or a (cached) hub revision: the
    `image_processor` section of processor_config.json (transformers 5 saves), else preprocessor_config.json
    (older saves and the hub releases); ("preprocessor_config.json", {}) if there is neither."""
    from transformers.utils import cached_file

    from pgpo.util.jsonfile import read_json

    hub = {"revision": revision} if revision else {}
    for name, section in (("processor_config.json", "image_processor"), ("preprocessor_config.json", None)):
        try:
            file = cached_file(str(path), name, _raise_exceptions_for_missing_entries=False,
                               _raise_exceptions_for_connection_errors=False, **hub)
        except OSError:  # not a directory and not a reachable hub id: AutoProcessor reports it below
            return "preprocessor_config.json", {}
        raw = read_json(file, "the checkpoint's writer (processor.save_pretrained)", what="processor config") \
            if file else {}
        raw = raw.get(section) if section else raw
        if raw:
            return name, raw
    return "preprocessor_config.json", {}


def load_processor(path, min_pixels: int | None = None, max_pixels: int | None = None, revision: str | None = None):
    """The processor of a checkpoint directory or hub id (at `revision`), with the image pixel budget overridden
    where min_pixels / max_pixels are given (else the checkpoint's own budget, i.e. the training budget)."""
    import transformers
    from transformers import AutoProcessor

    pixels = {k: int(v) for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v}
    hub = {"revision": revision} if revision else {}
    config_name, raw = _preprocessor_config(path, revision)
    declared = raw.get("image_processor_type")
    if declared in FIRST_RELEASE_IMAGE_PROCESSORS:
        return _first_release(path, raw, FIRST_RELEASE_IMAGE_PROCESSORS[declared], pixels, hub)
    try:
        return AutoProcessor.from_pretrained(str(path), **hub, **pixels)
    except ValueError as e:
        if "Unrecognized image processor" not in str(e):
            raise
        where = f"{path}/{config_name}" + (f" at revision {revision}" if revision else "")
        raise ProcessorError(
            f"{where}: transformers {transformers.__version__} has no image processor class "
            f"'image_processor_type': {declared!r}. Fix: set it to the class this model family uses (Qwen2.5-VL: "
            f"\"Qwen2VLImageProcessor\"), or pin a hub revision whose {config_name} names it") from e


def _first_release(path, raw: dict, image_class: str, pixels: dict, hub: dict):
    """Assemble the processor of a first-release checkpoint from its parts, with the image processor class named
    explicitly (the only part transformers cannot resolve). Saved again, it names the right class."""
    import transformers
    from transformers import AutoTokenizer, AutoVideoProcessor

    processor_class = getattr(transformers, raw.get("processor_class") or "Qwen2_5_VLProcessor")
    image_processor = getattr(transformers, image_class).from_pretrained(str(path), **hub, **pixels)
    tokenizer = AutoTokenizer.from_pretrained(str(path), **hub)
    # no video_preprocessor_config.json in that release: the video processor comes from config.json's model_type
    video_processor = AutoVideoProcessor.from_pretrained(str(path), **hub)
    processor_dict, _ = processor_class.get_processor_dict(str(path), **hub)  # chat_template.json / .jinja
    template = processor_dict.get("chat_template") or tokenizer.chat_template
    return processor_class(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                           chat_template=template)


def pinned_snapshot(path: str, revision: str = "") -> str:
    """The local directory of hub id `path` at commit `revision` (downloaded, or from the cache when offline);
    `path` itself when it is local or no revision is given.

    Why a directory rather than from_pretrained(..., revision=...): TRL's colocated vLLM engine loads
    `model.name_or_path` with no revision, i.e. the hub's current main (its config and processor, not only the
    weights it is later synced to). Loading model and processor from the pinned snapshot makes name_or_path that
    snapshot, so the trainer, the processor and vLLM all read the same commit."""
    from pgpo.config.schema import is_hub_id

    if not revision or not is_hub_id(path):
        return path
    from huggingface_hub import constants, snapshot_download

    # offline (HF_HUB_OFFLINE=1, as on compute nodes after a prefetch) only the cached snapshot of that commit counts
    return snapshot_download(path, revision=revision, local_files_only=constants.HF_HUB_OFFLINE)
