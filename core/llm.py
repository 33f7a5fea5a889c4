"""The Ollama client, with its many failure shapes turned into the few a learner can be told about."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import httpx
from ollama import AsyncClient, ResponseError

from .errors import ModelFailed, ModelMissing, OllamaUnavailable, ReplyInterrupted
from .settings import Settings


@dataclass(frozen=True)
class Delta:
    """A piece of the model's reply; the last one carries why it ended and the token counts."""

    text: str
    done_reason: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0


class Model:
    """Streams chat completions from the configured model with the tutoring options always set."""

    def __init__(self, settings: Settings) -> None:
        self.host = settings.ollama_host
        self.name = settings.model
        self._keep_alive = settings.keep_alive
        self._options = {
            "num_ctx": settings.num_ctx,
            "num_predict": settings.num_predict,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "repeat_penalty": settings.repeat_penalty,
        }
        # Never the client's default of no timeout: a hung server would silence a chat forever.
        timeout = httpx.Timeout(settings.request_timeout, connect=min(10.0, settings.request_timeout))
        self.client = AsyncClient(host=self.host, timeout=timeout)

    async def close(self) -> None:
        await self.client._client.aclose()

    async def stream(self, messages: Sequence[Mapping[str, str]]) -> AsyncIterator[Delta]:
        """Yield the reply as it is written; raise a `TutorError` subclass on any failure."""
        started = False
        try:
            response = await self.client.chat(
                model=self.name,
                messages=list(messages),
                stream=True,
                think=False,  # a thinking model would otherwise spend the budget on hidden text
                options=self._options,
                keep_alive=self._keep_alive,
            )
            async for part in response:
                text = part.message.content or ""
                if part.done:
                    yield Delta(text, part.done_reason or "stop", part.prompt_eval_count or 0, part.eval_count or 0)
                    return
                if text:
                    started = True
                    yield Delta(text)
            if started:  # the stream ended without its final line
                raise ReplyInterrupted()
        except ResponseError as error:
            raise self._translate(error, started) from error
        except (ConnectionError, httpx.ConnectError) as error:
            raise (ReplyInterrupted() if started else OllamaUnavailable(self.host)) from error
        except httpx.HTTPError as error:
            raise (ReplyInterrupted() if started else ModelFailed(type(error).__name__)) from error

    def _translate(self, error: ResponseError, started: bool) -> Exception:
        if error.status_code == 404 and "not found" in str(error.error).lower():
            return ModelMissing(self.name)
        if started:
            return ReplyInterrupted()
        return ModelFailed(f"{error.status_code}: {error.error}")
