"""Language models behind any OpenAI-compatible ``/chat/completions`` endpoint.

OpenAI, vLLM, Ollama and llama.cpp's server all speak it; pdfqa talks to them through the
``openai`` package, on the process's shared ``httpx.AsyncClient``. The SDK retries a request that
fails before any token arrives (429 honouring ``Retry-After``, 5xx, timeouts); a stream that breaks
half-way cannot be retried and surfaces as :class:`~pdfqa.errors.UpstreamUnavailable` with a
reason a person can read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Literal, Protocol

import httpx
import msgspec
import openai

from pdfqa.errors import UpstreamUnavailable
from pdfqa.settings import Settings

__all__ = ["ChatMessage", "ChatModel", "OpenAIChatModel", "create_chat_model", "explain"]


class ChatMessage(msgspec.Struct, frozen=True):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatModel(Protocol):
    """Streams a completion of a chat."""

    @property
    def name(self) -> str: ...

    def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        """The answer's text in pieces as the model produces them."""
        ...

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int = 64, stop: Sequence[str] = ()
    ) -> str:
        """The whole (short) answer at once, cut at the first of ``stop``."""
        ...


def create_chat_model(settings: Settings, http_client: httpx.AsyncClient) -> ChatModel | None:
    """The configured model, or None: then answers are extractive."""
    if not settings.chat_model:
        return None
    return OpenAIChatModel(settings, http_client)


def explain(err: openai.APIError) -> str:
    """A sentence saying what went wrong upstream."""
    if isinstance(err, openai.APITimeoutError):
        return "The language model did not answer in time."
    if isinstance(err, openai.RateLimitError):
        return "The language model is rate-limiting requests (HTTP 429); try again shortly."
    if isinstance(err, openai.APIStatusError):
        return f"The language model failed (HTTP {err.status_code})."
    if isinstance(err, openai.APIConnectionError):
        return "The language model could not be reached."
    return f"The language model failed: {err.message}"


class OpenAIChatModel:
    """A chat model served by an OpenAI-compatible endpoint."""

    def __init__(self, settings: Settings, http_client: httpx.AsyncClient) -> None:
        self._model = settings.chat_model or ""
        self._max_tokens = settings.chat_max_tokens
        self._temperature = settings.chat_temperature
        self._client = openai.AsyncOpenAI(
            base_url=settings.chat_base_url or settings.openai_base_url,
            api_key=settings.chat_api_key or settings.openai_api_key,
            # The SDK is typed for httpx2 but accepts an httpx.AsyncClient at runtime.
            http_client=http_client,  # type: ignore[arg-type]
            max_retries=settings.chat_max_retries,
            timeout=settings.chat_timeout_s,
        )

    @property
    def name(self) -> str:
        return self._model

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        started = False
        try:
            response = await self._client.chat.completions.create(
                model=self._model,
                messages=[msgspec.to_builtins(m) for m in messages],
                stream=True,
                max_tokens=self._max_tokens,
                temperature=self._temperature,
            )
            async with response as chunks:
                async for chunk in chunks:
                    if chunk.choices and chunk.choices[0].delta.content:
                        started = True
                        yield chunk.choices[0].delta.content
        except (openai.APIError, httpx.HTTPError) as err:
            if started:  # tokens were already sent: nothing can be retried now
                raise UpstreamUnavailable("The language model's answer was cut off.") from err
            if isinstance(err, openai.APIError):
                raise UpstreamUnavailable(explain(err)) from err
            raise UpstreamUnavailable("The language model could not be reached.") from err

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int = 64, stop: Sequence[str] = ()
    ) -> str:
        try:
            response = await self._client.chat.completions.create(
                model=self._model,
                messages=[msgspec.to_builtins(m) for m in messages],
                max_tokens=max_tokens,
                temperature=0.0,
                stop=list(stop) or None,
            )
        except openai.APIError as err:
            raise UpstreamUnavailable(explain(err)) from err
        return (response.choices[0].message.content or "").strip() if response.choices else ""
