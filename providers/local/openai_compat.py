"""A LangChain chat model over any OpenAI-compatible local server (llama-server, Ollama, vLLM)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import SecretStr

from providers.local.templates import DEFAULT_MAX_TOKENS, DEFAULT_SEED, DEFAULT_TEMPERATURE, to_turns

if TYPE_CHECKING:
    pass


# ----------------------------------------------------------------------------------------------------------
# OpenAI-compatible local server
# ----------------------------------------------------------------------------------------------------------


def chat_completions_url(base_url: str) -> str:
    """Return the chat-completions endpoint for a base URL given with or without its ``/v1``."""
    base = base_url.rstrip("/")
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    return f"{base}/v1/chat/completions"


class ChatOpenAICompatLocal(BaseChatModel):
    """Chat with a local OpenAI-compatible server (llama-server, llama_cpp.server, Ollama, vLLM).

    One request per call and no retries: retry and fallback belong to the graph. The server applies its own
    chat template, so messages go out as roles, not as a formatted prompt.
    """

    base_url: str
    model: str = ""
    api_key: SecretStr | None = None
    timeout_s: float = 60.0
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = DEFAULT_TEMPERATURE
    seed: int | None = DEFAULT_SEED
    stop: list[str] | None = None
    logprobs: bool = False

    @property
    def _llm_type(self) -> str:
        return "openai-compatible-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "model": self.model, "max_tokens": self.max_tokens}

    def request_body(self, messages: Sequence[BaseMessage], stop: list[str] | None = None) -> dict[str, Any]:
        """Build the chat-completions request for these messages."""
        body: dict[str, Any] = {
            # llama-server ignores the name, Ollama and vLLM require it.
            "model": self.model or "local",
            "messages": [{"role": role, "content": text} for role, text in to_turns(messages)],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": False,
        }
        if self.seed is not None:
            body["seed"] = self.seed
        stops = [*(self.stop or []), *(stop or [])]
        if stops:
            body["stop"] = stops
        if self.logprobs:
            body["logprobs"] = True
        return body

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        import httpx

        headers = {"Content-Type": "application/json"}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key.get_secret_value()}"
        with httpx.Client(timeout=httpx.Timeout(self.timeout_s)) as client:
            response = client.post(
                chat_completions_url(self.base_url), json=self.request_body(messages, stop), headers=headers
            )
        response.raise_for_status()
        data = response.json()
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        if not isinstance(text, str):
            raise TypeError(f"message content is {type(text).__name__}, not text")
        usage_in = data.get("usage") or {}
        input_tokens = int(usage_in.get("prompt_tokens", 0) or 0)
        output_tokens = int(usage_in.get("completion_tokens", 0) or 0)
        finish_reason = str(choice.get("finish_reason") or "stop")
        name = str(data.get("model") or self.model or "local")
        metadata: dict[str, Any] = {"model_name": name, "finish_reason": finish_reason}
        mean = _mean_openai_logprob(choice.get("logprobs"))
        if mean is not None:
            metadata["mean_logprob"] = mean
        message = AIMessage(
            content=text,
            usage_metadata=UsageMetadata(
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                total_tokens=input_tokens + output_tokens,
            ),
            response_metadata=metadata,
        )
        return ChatResult(
            generations=[ChatGeneration(message=message, generation_info={"finish_reason": finish_reason})],
            llm_output={"model_name": name},
        )


def _mean_openai_logprob(logprobs: Any) -> float | None:
    if not isinstance(logprobs, dict):
        return None
    content = logprobs.get("content")
    if not isinstance(content, list):
        return None
    values = [float(t["logprob"]) for t in content if isinstance(t, dict) and t.get("logprob") is not None]
    values = [v for v in values if math.isfinite(v)]
    return sum(values) / len(values) if values else None
