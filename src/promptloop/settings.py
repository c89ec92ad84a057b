"""One Settings class for the server and the CLI, read from `PROMPTLOOP_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".promptloop"


class Settings(BaseSettings):
    """Server settings. Every field is documented; `docs/settings.md` is generated from them."""

    model_config = SettingsConfigDict(env_prefix="PROMPTLOOP_", extra="ignore")

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Folder for the SQLite database and other server files.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the database, e.g. `postgresql+psycopg://user:pw@host/db`. "
        "Unset: SQLite at `<data_dir>/promptloop.db`.",
    )
    host: str = Field(default="127.0.0.1", description="Address `promptloop serve` listens on.")
    port: int = Field(
        default=8000, ge=1, le=65535, description="Port `promptloop serve` listens on."
    )
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1024,
        description="Largest request body the API accepts, in bytes; larger ones get 413.",
    )
    default_project: str = Field(
        default="default",
        description="Project created on first start and used when a request names none.",
    )
    database_pool_size: int = Field(
        default=10, ge=1, description="Connections kept open per process (PostgreSQL only)."
    )

    secret_key: str | None = Field(
        default=None,
        description="Key that encrypts provider keys at rest (a Fernet key). Unset: generated "
        "once into `<data_dir>/secret.key`. Replicas sharing a database must share this key.",
    )
    session_days: int = Field(
        default=14, ge=1, le=365, description="Days a browser stays signed in."
    )
    cookie_secure: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="Secure flag of the session cookie: `auto` sets it on HTTPS and loopback hosts.",
    )
    sign_in_attempts_per_minute: int = Field(
        default=10,
        ge=1,
        description="Sign-in attempts allowed per minute, per address and per account.",
    )
    feedback_token_ttl_s: int = Field(
        default=86_400,
        ge=60,
        le=90 * 86_400,
        description="Seconds a feedback token (browser feedback on one log) stays valid.",
    )
    public_feedback_per_minute: int = Field(
        default=60,
        ge=1,
        description="Token-authenticated feedback requests allowed per minute, per address and "
        "per log.",
    )
    worker: bool = Field(
        default=True,
        description="Run the background-job worker (evaluation runs) inside `promptloop serve`. "
        "Turn off on API replicas when `promptloop worker` processes run elsewhere.",
    )
    worker_jobs: list[Literal["evaluation_run", "fine_tune"]] = Field(
        default=["evaluation_run", "fine_tune"],
        description="Which kinds of job this process's worker runs, e.g. leave `fine_tune` to "
        "a `promptloop worker` on a machine with a GPU.",
    )
    job_stale_after_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds without a heartbeat after which a running job is taken over by "
        "another worker (its own worker died); it resumes without repeating finished work.",
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL users reach the server at, for links it prints (default: http://host:port).",
    )

    demo: bool = Field(
        default=False,
        description="Seed a `demo` project on a fresh server: prompts, deployments, logs with "
        "feedback, a dataset, a LoRA fine-tune and evaluation runs on the offline model (see "
        "`docs/demo.md`). `scripts/run` turns it on; the server seeds it only while that project "
        "has no prompts.",
    )

    warm_local_model: bool = Field(
        default=True,
        description="Load the offline local model in the background at start, so the first call "
        "through it does not wait for the one-time conversion (tens of seconds).",
    )

    def base_url(self) -> str:
        """The URL users reach this server at."""
        return self.public_url or f"http://{self.host}:{self.port}"

    def resolved_database_url(self) -> str:
        """The database URL to use: the configured one, or SQLite in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'promptloop.db'}"
