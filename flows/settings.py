"""The one settings object: ``WIKIREF_*`` environment variables and an optional ``.env`` file.

Only the ``flows`` layer (flows, CLI) reads settings; ``db`` and ``models`` get explicit values.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import platformdirs
from typing import Literal

from pydantic import Field, HttpUrl, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from db.engine import validate_database_url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WIKIREF_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL (pgvector required). Unset: an embedded server in the data directory.",
    )
    data_dir: Path = Field(
        default_factory=lambda: platformdirs.user_data_path("wikiref"),
        description="Where the embedded database, model versions and caches live.",
    )
    api_url: HttpUrl = Field(
        default=HttpUrl("https://en.wikipedia.org/w/api.php"),
        description="MediaWiki Action API endpoint (api.php) to scrape.",
    )
    user_agent: str = Field(
        default="wikiref/0.1 (https://github.com/wikiref/wikiref; wikiref-maintainers@example.org)",
        description="Descriptive User-Agent with contact, as Wikimedia's bot policy asks.",
    )
    base_model: str = Field(
        default="sentence-transformers/all-MiniLM-L6-v2",
        description="Model to fine-tune: a hub id or a local path.",
    )

    # --- embed: encoding, HNSW indexes, query recall (docs/embed.md) ---------------------------------------
    embed_backend: Literal["auto", "torch", "onnx"] = Field(
        default="auto",
        description="Encoder runtime: torch (fp32, CPU or CUDA), onnx (int8, needs `pip install 'wikiref[fast]'`), "
        "or auto = onnx when installed, else torch. Queries are encoded with the same backend.",
    )
    embed_device: str = Field(default="cpu", pattern=r"^(cpu|cuda(:\d+)?)$", description="cpu, cuda or cuda:N.")
    embed_batch_size: int = Field(default=64, ge=1, le=4096, description="Texts per forward pass.")
    embed_chunk_size: int = Field(
        default=1024, ge=1, le=100_000,
        description="Texts per encoding task (the unit a Dask cluster fans out) and per COPY transaction.",
    )
    embed_threads: int | None = Field(default=None, ge=1, description="Encoder threads; unset: one per core.")
    hnsw_m: int = Field(default=16, ge=2, le=100, description="HNSW graph degree of new indexes.")
    hnsw_ef_construction: int = Field(
        default=128, ge=4, le=1000, description="HNSW build-time candidate list (at least 2 x m)."
    )
    hnsw_ef_search: int = Field(
        default=100, ge=1, le=1000,
        description="hnsw.ef_search the SQL functions use (raised to k when k is larger); recorded per version.",
    )
    embed_maintenance_work_mem: str = Field(
        default="512MB", pattern=r"^\d+\s*(kB|MB|GB)$",
        description="maintenance_work_mem for HNSW builds: a graph that does not fit builds far slower.",
    )

    @model_validator(mode="after")
    def _check_hnsw(self) -> "Settings":
        if self.hnsw_ef_construction < 2 * self.hnsw_m:
            raise ValueError(
                f"hnsw_ef_construction ({self.hnsw_ef_construction}) must be at least 2 x hnsw_m ({self.hnsw_m})"
            )
        return self

    embed_cache_dir: Path | None = Field(
        default=None, description="Where exported ONNX models are kept; unset: <data dir>/cache/onnx."
    )

    @property
    def onnx_cache_dir(self) -> Path:
        return (self.embed_cache_dir or self.data_dir / "cache" / "onnx").expanduser()
    # --- end embed -------------------------------------------------------------------------------------------

    # --- scrape (issue 3): MediaWiki client etiquette and batching ---------------------------------------
    scrape_requests_per_second: float = Field(
        default=10.0,
        gt=0,
        le=1000,
        description="Request-rate limit per process towards the MediaWiki API (retries included).",
    )
    scrape_concurrency: int = Field(
        default=4, ge=1, le=64, description="Requests in flight at once per scraping client."
    )
    scrape_max_retries: int = Field(
        default=6,
        ge=0,
        le=20,
        description="Retries of one request (429/5xx/timeouts/resets) before giving up.",
    )
    scrape_request_timeout: float = Field(
        default=30.0, gt=0, le=600, description="Seconds to wait for one response (read timeout)."
    )
    scrape_maxlag: int | None = Field(
        default=5,
        ge=0,
        description="maxlag sent with every API call: the wiki answers 'lagged' when its replicas lag more.",
    )
    scrape_batch_size: int = Field(
        default=25,
        ge=1,
        le=500,
        description="Titles per fetch task (the unit Prefect retries and Dask spreads).",
    )
    scrape_prefect_rate_limit: str | None = Field(
        default="mediawiki-api",
        description="Name of a Prefect global concurrency limit (with slot decay) every API request also takes "
        "a slot of, when it exists: a rate limit across all workers and runs. Empty: none.",
    )
    wiki: str | None = Field(
        default=None,
        description="Wiki name stored with articles (e.g. en.wikipedia.org). Unset: the API's server name.",
    )
    pageviews_url: HttpUrl | None = Field(
        default=None,
        description="Pageviews API base (…/metrics/pageviews). Unset: wikimedia.org for Wikimedia wikis, "
        "else the API's own server (the mirror).",
    )
    # --- end scrape ----------------------------------------------------------------------------------------

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        return validate_database_url(value)

    @field_validator("data_dir")
    @classmethod
    def _expand_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("user_agent")
    @classmethod
    def _check_user_agent(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty: Wikimedia blocks clients without a descriptive User-Agent")
        return value.strip()

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def pgdata_dir(self) -> Path:
        return self.data_dir / "pgdata"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
