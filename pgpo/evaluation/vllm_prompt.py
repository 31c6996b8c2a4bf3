"""The prompt string lmms-eval's `vllm` backend makes vLLM render for a document, computed without vLLM.

The chain on the GPU: our task's doc_to_messages -> lmms-eval's ChatMessages.to_openai_messages (images become
base64 `image_url` parts) -> vLLM's LLM.chat, which parses the parts and applies the checkpoint's chat template.
The first two steps are the real code here; the third is vLLM's rule (vllm/entrypoints/chat_utils.py,
_parse_chat_message_content_part with wrap_dicts=True): for a template that loops over message['content']
("openai" content format) a text part becomes {"type": "text", "text": ...}, an image part {"type": "image"} and
a string content one text part. vLLM is not importable on the CPU machines, so the rule is restated here and the
tests compare its result with the training and HF-evaluation prompts: one place to see that all paths agree.
"""

from __future__ import annotations

import re

# vLLM's "openai" content-format detection looks for a loop over message['content'] in the template's AST;
# the Qwen2-VL / Qwen2.5-VL templates have exactly this loop
_CONTENT_LOOP = re.compile(r"for\s+\w+\s+in\s+message(\[\s*['\"]content['\"]\s*\]|\.content)")
_IMAGE_PARTS = ("image_url", "input_image", "image_pil", "image_embeds")


def content_format(chat_template: str) -> str:
    """'openai' if the template iterates over a message's content parts, else 'string' (vLLM's two formats)."""
    return "openai" if _CONTENT_LOOP.search(chat_template or "") else "string"


def template_conversation(openai_messages: list[dict]) -> list[dict]:
    """OpenAI-style messages -> the conversation vLLM hands to an 'openai'-format chat template."""
    out = []
    for message in openai_messages:
        parts = message.get("content") or []
        if isinstance(parts, str):
            parts = [{"type": "text", "text": parts}]
        content = []
        for part in parts:
            kind = part.get("type")
            if kind in ("text", "input_text"):
                content.append({"type": "text", "text": part["text"]})
            elif kind in _IMAGE_PARTS:
                content.append({"type": "image"})
            else:  # video/audio never occur in our tasks; a silent skip would hide a changed prompt
                raise ValueError(f"vllm_prompt: content part type {kind!r} is not handled")
        out.append({"role": message["role"], "content": content})
    return out


def vllm_prompt(processor, doc: dict) -> str:
    """The prompt text vLLM renders for `doc` (a canonical evaluation document) with `processor`'s template."""
    from lmms_eval.protocol import ChatMessages

    from pgpo.evaluation.docs import doc_to_messages

    if content_format(processor.chat_template) != "openai":
        # vLLM would then join the texts and prepend its own image placeholders: a different prompt from training
        raise ValueError("vllm_prompt: the chat template does not loop over message['content']; vLLM would render "
                         "it in its 'string' content format, unlike the training prompt")
    messages = ChatMessages(messages=doc_to_messages(doc)).to_openai_messages(video_kwargs={})
    return processor.apply_chat_template(template_conversation(messages), add_generation_prompt=True,
                                         tokenize=False)
