"""Which engine serves the model, chosen in one place: Ollama (`core.llm`) or an OpenAI-compatible server
(`core.openai_model`), by `POLYGLOTT_BACKEND`."""

from __future__ import annotations

from .llm import Model
from .settings import Settings


def open_model(settings: Settings) -> Model:
    """The model client for `settings.backend`, on the first server; both have `Model`'s interface."""
    return open_models(settings)[0]


def open_models(settings: Settings) -> list[Model]:
    """One client per model server: each Ollama of `POLYGLOTT_OLLAMA_HOST`, or the one OpenAI-compatible server."""
    if settings.backend == "openai":
        # Imported only when used: the openai client takes about two seconds to import.
        from .openai_model import OpenAIModel

        return [OpenAIModel(settings)]
    return [Model(settings, host) for host in settings.ollama_hosts]
