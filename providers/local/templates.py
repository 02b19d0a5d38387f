"""Chat templates of local models, their stop strings, and the sampling defaults of the local tier.

Prompt formatting is ours, not llama_cpp's chat handlers: a GGUF without ``tokenizer.chat_template`` (many
gemma conversions) makes ``Llama`` silently fall back to the ``llama-2`` format, which is wrong for them; its
Jinja path also renders the BOS token as text, which the tokenizer then adds a second
time. These formatters are plain functions, unit-tested without a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    SystemMessage,
)

if TYPE_CHECKING:
    pass


ChatTemplate = Literal["gemma", "llama3", "chatml"]
Role = Literal["system", "user", "assistant"]

DEFAULT_MAX_TOKENS = 256
DEFAULT_N_CTX = 2048
DEFAULT_TEMPERATURE = 0.2
# A fixed seed makes the same prompt give the same answer, so tests and cached analyses are reproducible.
DEFAULT_SEED = 42


# Turn delimiters double as stop strings: a model that ignores its end-of-turn token (the 270M gemma is a base
# model) would otherwise write the next user turn itself.
STOP_STRINGS: dict[ChatTemplate, tuple[str, ...]] = {
    "gemma": ("<end_of_turn>", "<start_of_turn>"),
    "llama3": ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>", "<|start_header_id|>"),
    "chatml": ("<|im_end|>", "<|im_start|>", "<|endoftext|>"),
}


# ----------------------------------------------------------------------------------------------------------
# Prompt formatting
# ----------------------------------------------------------------------------------------------------------


def _role(message: BaseMessage) -> Role:
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, ChatMessage) and message.role in ("system", "assistant"):
        return "system" if message.role == "system" else "assistant"
    # Human, tool and function messages are all input the model has to read.
    return "user"


def to_turns(messages: Sequence[BaseMessage]) -> list[tuple[Role, str]]:
    """Reduce LangChain messages to (role, text) turns."""
    return [(_role(m), m.text) for m in messages]


def format_gemma(turns: Sequence[tuple[Role, str]]) -> str:
    """Render turns in gemma's chat format.

    Gemma has no system role and expects strictly alternating turns, so system text is folded into the
    first user turn and consecutive turns of one role are merged. No ``<bos>``: the tokenizer adds it.
    """
    system = "\n\n".join(text for role, text in turns if role == "system" and text)
    merged: list[tuple[Role, str]] = []
    for role, text in turns:
        if role == "system":
            continue
        if merged and merged[-1][0] == role:
            merged[-1] = (role, f"{merged[-1][1]}\n\n{text}")
        else:
            merged.append((role, text))
    if system:
        if merged and merged[0][0] == "user":
            merged[0] = ("user", f"{system}\n\n{merged[0][1]}")
        else:
            merged.insert(0, ("user", system))
    parts = [
        f"<start_of_turn>{'model' if role == 'assistant' else 'user'}\n{text}<end_of_turn>\n" for role, text in merged
    ]
    return "".join(parts) + "<start_of_turn>model\n"


def format_llama3(turns: Sequence[tuple[Role, str]]) -> str:
    """Render turns in the Llama 3 instruct format (no ``<|begin_of_text|>``: the tokenizer adds it)."""
    parts = [f"<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>" for role, text in turns]
    return "".join(parts) + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def format_chatml(turns: Sequence[tuple[Role, str]]) -> str:
    """Render turns in ChatML (Qwen and many fine-tunes)."""
    parts = [f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in turns]
    return "".join(parts) + "<|im_start|>assistant\n"


_FORMATTERS = {"gemma": format_gemma, "llama3": format_llama3, "chatml": format_chatml}


def format_prompt(messages: Sequence[BaseMessage], template: ChatTemplate) -> str:
    """Render chat messages as one completion prompt, ending where the model's answer begins."""
    return _FORMATTERS[template](to_turns(messages))


def detect_template(metadata: Mapping[str, str]) -> ChatTemplate:
    """Pick the chat format from GGUF metadata, falling back to gemma (the embedded default model)."""
    chat_template = metadata.get("tokenizer.chat_template", "")
    if "<start_of_turn>" in chat_template:
        return "gemma"
    if "<|start_header_id|>" in chat_template:
        return "llama3"
    if "<|im_start|>" in chat_template:
        return "chatml"
    arch = metadata.get("general.architecture", "").lower()
    if arch.startswith("gemma"):
        return "gemma"
    # "llama" covers Llama 2, Mistral and Llama 3 alike; Llama 3's BPE pre-tokenizer tells them apart.
    if arch == "llama" and metadata.get("tokenizer.ggml.pre", "") == "llama-bpe":
        return "llama3"
    if arch.startswith("qwen"):
        return "chatml"
    return "gemma"
