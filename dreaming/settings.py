"""One settings object: every path and threshold the system reads comes from here.

Values come from the environment (prefix ``DREAMS_``), e.g. ``DREAMS_HOME=/srv/lake``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import SecretStr  # DREAMS_WEBHOOK_SECRET (dreaming.notifications)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "DREAMS_"


def _from_env(fields: dict) -> dict[str, Any]:
    """``DREAMS_<FIELD>`` values (names case-insensitive, as pydantic-settings reads them); a list or dict
    field takes JSON (``DREAMS_ALLOWED_MODELS='["claude-sonnet-4-6"]'``). Pydantic validates the strings.

    A plain BaseModel reading the environment itself: pydantic-settings cost ~0.4 s of every CLI start."""
    env = {k.lower(): v for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)}
    out: dict[str, Any] = {}
    for name, field in fields.items():
        raw = env.get(f"{ENV_PREFIX.lower()}{name}")
        if raw is None:
            continue
        if get_origin(field.annotation) in (list, dict) or field.annotation in (list, dict):
            raw = json.loads(raw)
        out[name] = raw
    return out


class Settings(BaseModel):
    """Explicit keyword arguments win over the environment, which wins over the defaults."""

    model_config = ConfigDict(extra="ignore")

    def __init__(self, **values: Any):
        super().__init__(**{**_from_env(type(self).model_fields), **values})

    home: Path = Field(default=PROJECT_ROOT / "data", description="Lake root: everything the system owns.")
    research_data: Path = Field(
        default=PROJECT_ROOT.parent / "shared" / "research-data",
        description="Where the public research transcripts are (tau-bench, SWE-bench, LoCoMo): read by the "
        "real-data tests and benches, which skip when it is absent (DREAMS_RESEARCH_DATA).",
    )
    catalog_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the catalog; default: SQLite under the lake root."
    )
    fast_reads: bool = Field(
        default=True, description="The listing commands read a SQLite catalog at the schema's head through plain "
        "sqlite3, read-only (dreaming.catalog_read), and store versions through DuckDB: no SQLAlchemy, no pyarrow "
        "(CLI start-up). false: through SQLAlchemy and pyarrow, as everything else reads.",
    )
    lake_url: str | None = Field(
        default=None, description="Where the lake's files are: unset, under the lake root (transcripts/, "
        "originals/); an object store URL (s3://bucket/prefix) puts them there (docs/lake.md). The catalog, "
        "locks, staging, stores and dreams stay under the lake root (or the catalog on PostgreSQL).",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="The S3 endpoint of an s3:// lake_url (an S3-compatible server); unset: what "
        "botocore reads itself (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL), else AWS.",
    )
    max_sessions_per_dream: int = Field(default=100, ge=1, description="Anthropic's cap is 100; raise for big lakes.")
    max_instructions_chars: int = 4096
    default_model: str = "claude-sonnet-4-6"
    allowed_models: list[str] = Field(
        default_factory=lambda: ["claude-sonnet-4-6", "claude-opus-4-8", "claude-haiku-4-5", "claude-opus-4-6"]
    )
    token_budget_per_dream: int = Field(default=400_000, ge=1, description="Claude curator: input+output tokens.")
    claude_max_output_tokens: int = Field(default=8192, ge=256, description="Claude curator: max_tokens per call.")
    claude_batch_tokens: int = Field(
        default=24_000, ge=1, description="Claude curator: estimated digest tokens per map batch."
    )
    claude_single_pass: bool = Field(
        default=True, description="Claude curator: when the digests fit one batch, one call (no map step)."
    )
    claude_sdk_max_retries: int = Field(
        default=0, ge=0, description="anthropic SDK retries per call; Prefect retries transient errors, so keep low."
    )
    claude_timeout_s: float = Field(default=300.0, gt=0, description="Claude curator: HTTP timeout per call.")
    dream_lease_s: float = Field(
        default=60.0, gt=0, description="A running dream's lease in the catalog; renewed every quarter of it."
    )
    max_removed_share: float = Field(default=0.25, ge=0, le=1, description="Gate: share of base memories removed.")
    min_event_time: datetime = Field(
        default=datetime(2000, 1, 1, tzinfo=UTC), description="Ingest: events before this are refused (exit 2)."
    )
    max_future: timedelta = Field(
        default=timedelta(days=1), description="Ingest: events this far past the clock are refused (exit 2)."
    )
    keep_secrets: bool = Field(
        default=False, description="Ingest: keep the unredacted originals in a sidecar under originals/."
    )
    staging_grace_s: float = Field(
        default=3600.0, gt=0, description="fsck: a staged file without a live writer is stale after this age."
    )

    api_keys: str | None = Field(
        default=None, description="`dreams api`: the API keys and their tenants, as `key=tenant[,key=tenant]` or "
        "the path of a JSON file `{\"<key>\": \"<tenant>\"}` (a key may be given as `sha256:<hex digest>`); "
        "sent as `x-api-key` (docs/api.md).",
    )

    # webhooks on a dream's events (dreaming.notifications, docs/review.md "Notifications")
    webhook_url: str | None = Field(
        default=None, description="Webhook URL(s), space or comma separated, notified when a dream awaits approval, "
        "is promoted, fails its gate or fails; a store's metadata `webhook_url` replaces it for that store.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="The shared secret that signs every webhook (HMAC-SHA256, `X-Dreams-Signature`); "
        "a target without a secret is not sent to.",
    )
    webhook_timeout_s: float = Field(default=5.0, gt=0, description="Webhooks: HTTP timeout per attempt.")
    webhook_retries: int = Field(
        default=3, ge=0, le=10, description="Webhooks: tries after the first on a 5xx, a 429 or a connection error.")
    webhook_backoff_s: float = Field(
        default=0.5, ge=0, description="Webhooks: the first retry's delay; each next one doubles it.")

    @field_validator("max_future", mode="before")
    @classmethod
    def _duration(cls, v: object) -> object:
        """Also ``1d`` / ``12h`` / ``30m`` / ``90s`` (dreaming.timewindow) and plain seconds (``86400``)
        besides ISO 8601 (``P1D``)."""
        from dreaming.timewindow import parse_duration

        if isinstance(v, str):
            span = parse_duration(v)
            if span is not None:
                return span
            if re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", v):
                return timedelta(seconds=float(v))
        return v

    def check_model(self, model: str) -> str:
        """``model`` when it is one of ``allowed_models``; else a clear error (exit 2) naming the setting."""
        if model not in self.allowed_models:
            from dreaming.errors import DreamsError

            raise DreamsError(f"model {model!r} is not allowed; allowed models: {', '.join(self.allowed_models)} "
                              "(setting DREAMS_ALLOWED_MODELS)")
        return model

    @property
    def transcripts_dir(self) -> Path:
        return self.home / "transcripts"

    @property
    def stores_dir(self) -> Path:
        return self.home / "stores"

    @property
    def dreams_dir(self) -> Path:
        return self.home / "dreams"

    @property
    def staging_dir(self) -> Path:
        """Where files are written before they are validated and renamed into place."""
        return self.home / "_staging"

    @property
    def quarantine_dir(self) -> Path:
        """Where fsck moves files it found in the lake without a catalog row (never deleted)."""
        return self.home / "quarantine"

    @property
    def originals_dir(self) -> Path:
        """``--keep-secrets`` sidecars: unredacted originals, never read by the lake."""
        return self.home / "originals"

    @property
    def catalog_path(self) -> Path:
        return self.home / "catalog.sqlite"

    @property
    def resolved_catalog_url(self) -> str:
        return self.catalog_url or f"sqlite:///{self.catalog_path}"


def get_settings(**overrides) -> Settings:
    """Fresh settings from the environment (cheap; not cached so tests can move the lake)."""
    return Settings(**overrides)


@contextmanager
def use_lake(home: Path, **settings: object) -> Iterator[Settings]:
    """Point ``DREAMS_HOME`` (and other ``DREAMS_*`` settings) at ``home`` for the duration; restore after.

    Flows and tasks build their own ``Catalog()`` from the environment, so a lake chosen in code
    (the demo's, an eval scenario's) must be selected there, not only passed around.
    """
    env = {"DREAMS_HOME": str(home), **{f"DREAMS_{k.upper()}": str(v) for k, v in settings.items()}}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield get_settings()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
