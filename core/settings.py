"""Settings from the environment and a `.env` file, all prefixed `POLYGLOTT_`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from platformdirs import user_data_path
from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_db_path() -> Path:
    return user_data_path("polyglott", appauthor=False) / "polyglott.db"


def _split_ids(value: object) -> object:
    """Accept `1,2, 3` as well as a JSON list, so ids read naturally in a `.env` file."""
    if isinstance(value, str):
        return [int(part) for part in value.replace(";", ",").split(",") if part.strip()]
    return value


IdList = Annotated[list[int], NoDecode]


class Settings(BaseSettings):
    """Everything an operator can set; tokens are secrets and never printed."""

    model_config = SettingsConfigDict(
        env_prefix="POLYGLOTT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    ollama_host: str = Field(
        default="http://127.0.0.1:11434",
        validation_alias=AliasChoices("POLYGLOTT_OLLAMA_HOST", "OLLAMA_HOST", "ollama_host"),
    )
    # Which engine serves the model: Ollama, or any OpenAI-compatible chat-completions server (vLLM, SGLang,
    # llama.cpp's server, LM Studio) at OPENAI_BASE_URL, with OPENAI_API_KEY if it wants one (core/openai_model.py).
    backend: Literal["ollama", "openai"] = "ollama"
    openai_base_url: str = "http://127.0.0.1:8000/v1"
    openai_api_key: SecretStr | None = None
    model: str = "qwen2.5:7b"
    num_ctx: int = Field(default=8192, ge=512)
    temperature: float = Field(default=0.7, ge=0)
    top_p: float = Field(default=0.9, gt=0, le=1)
    num_predict: int = Field(default=256, ge=16)
    repeat_penalty: float = Field(default=1.1, gt=0)
    keep_alive: str = "30m"
    max_parallel: int = Field(default=1, ge=1)
    # How long a reply may take, in seconds (see .env.example). Our own limits, enforced around each token, so one
    # stuck request cannot hold a class: connecting; the first token (model load and prompt evaluation come first);
    # the longest gap between two tokens once the reply has started; the whole reply.
    connect_timeout: float = Field(default=10.0, gt=0)
    first_token_timeout: float = Field(
        default=120.0,
        gt=0,
        # REQUEST_TIMEOUT was the one timeout before these four: existing .env files keep working.
        validation_alias=AliasChoices(
            "POLYGLOTT_FIRST_TOKEN_TIMEOUT", "POLYGLOTT_REQUEST_TIMEOUT", "first_token_timeout", "request_timeout"
        ),
    )
    stall_timeout: float = Field(default=20.0, gt=0)
    reply_timeout: float = Field(default=300.0, gt=0)
    db_path: Path = Field(default_factory=_default_db_path)
    # PostgreSQL instead of the SQLite file at DB_PATH, for several bot processes on one database
    # (postgresql://user:password@host:5432/polyglott): a secret, since it holds a password; never logged.
    database_url: SecretStr | None = None
    max_input_chars: int = Field(default=2000, ge=1)
    default_native_language: str = "english"
    log_level: str = "INFO"
    log_content: bool = False
    auto_pull: bool = False
    # On SIGTERM: how long replies being written may take to finish before they are cut off and stored so.
    shutdown_grace: float = Field(default=5.0, ge=0)
    # After a crash or a stop: learner messages left unanswered are answered at the next start if they are at
    # most this many seconds old; older ones get a short note instead (the moment has passed).
    recovery_window: float = Field(default=900.0, ge=0)
    # Reviews: FSRS schedules each card for when the learner would recall it with this probability (0.9 is
    # FSRS's default; higher means more reviews). A typed answer may count as right without its accents.
    desired_retention: float = Field(default=0.9, gt=0.5, lt=1)
    review_ignore_accents: bool = False
    # Classrooms and minors. Message text older than this many days is deleted every day (statistics without
    # text stay). A learner's messages per day (None: no cap; a teacher sets one per group with /classroom cap).
    # Minors mode: no content logging, a tutor that steers back to the lesson, and, with a moderation model
    # (e.g. llama-guard3:1b), every learner message and every reply screened before it is shown.
    retention_days: int = Field(default=365, ge=1)
    daily_messages: int | None = Field(default=None, ge=1)
    minors: bool = False
    moderation_model: str | None = None
    # Role-play scenes: a directory of scene files (TOML, like core/scene_data) a teacher or operator adds; one
    # with a built-in scene's name replaces it.
    scenes_dir: Path | None = None

    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    telegram_allowed_chats: IdList = Field(default_factory=list)
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: SecretStr | None = None
    telegram_webhook_listen: str = "127.0.0.1:8443"

    discord_token: SecretStr | None = None
    discord_guild_ids: IdList = Field(default_factory=list)
    discord_allowed_guilds: IdList = Field(default_factory=list)
    discord_teacher_role: str | None = None
    discord_message_content: bool = False  # privileged intent: enable it in the developer portal first
    # Sharding (Discord requires it from 2,500 servers): the bot's total number of shards, and the ones this
    # process serves (empty: all of them), so several processes can split the shards between them.
    discord_shard_count: int | None = Field(default=None, ge=1)
    discord_shard_ids: IdList = Field(default_factory=list)

    @field_validator(
        "telegram_allowed_chats", "discord_guild_ids", "discord_allowed_guilds", "discord_shard_ids", mode="before"
    )
    @classmethod
    def _ids(cls, value: object) -> object:
        return _split_ids(value)

    @field_validator("discord_shard_ids")
    @classmethod
    def _shards(cls, value: list[int], info: ValidationInfo) -> list[int]:
        """Shard ids only make sense out of a known count (declared first, so validated first): each from 0 to
        count - 1, each once. A count that failed its own check is reported there, not again here."""
        if not value or "discord_shard_count" not in info.data:
            return value
        count = info.data["discord_shard_count"]
        if count is None:
            raise ValueError("shard ids need POLYGLOTT_DISCORD_SHARD_COUNT, the bot's total number of shards")
        outside = [shard for shard in value if not 0 <= shard < count]
        if outside:
            raise ValueError(f"shard ids go from 0 to SHARD_COUNT - 1 ({count - 1}), not {outside[0]}")
        if len(set(value)) != len(value):
            raise ValueError("a shard id is listed twice")
        return value

    @field_validator("minors")
    @classmethod
    def _no_content_logs_for_minors(cls, value: bool, info: ValidationInfo) -> bool:
        """Minors mode refuses to start with content logging on, rather than quietly turning it off: the operator
        asked for both, and must choose (log_content is validated first: it is declared first)."""
        if value and info.data.get("log_content"):
            raise ValueError(
                "minors mode cannot log what learners write: set POLYGLOTT_LOG_CONTENT=false (or turn minors mode off)"
            )
        return value

    @field_validator("backend", mode="before")
    @classmethod
    def _backend(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("openai_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        """The client joins `/chat/completions` to it: no trailing slash, and a scheme for a bare `host:port/v1`."""
        value = value.strip().rstrip("/")
        return value if "://" in value else f"http://{value}"

    @field_validator("ollama_host")
    @classmethod
    def _host(cls, value: str) -> str:
        """One server or several, comma-separated. Ollama's own `OLLAMA_HOST` may be a bare `0.0.0.0:11434`; the
        client wants a URL."""
        hosts = []
        for host in value.split(","):
            host = host.strip().rstrip("/")
            if not host:
                continue
            if "://" not in host:
                host = f"http://{host}"
            hosts.append(host.replace("://0.0.0.0", "://127.0.0.1"))
        if not hosts:
            raise ValueError("no Ollama server given")
        return ",".join(hosts)

    @property
    def ollama_hosts(self) -> list[str]:
        """Every Ollama server, in the order given: each gets MAX_PARALLEL requests at a time."""
        return self.ollama_host.split(",")

    @field_validator(
        "telegram_token",
        "discord_token",
        "telegram_webhook_url",
        "telegram_webhook_secret",
        "openai_api_key",
        "database_url",
        "discord_teacher_role",
        "moderation_model",
        "daily_messages",
        "scenes_dir",
        "discord_shard_count",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value
