"""The one settings object: ``WIKIREF_*`` environment variables and an optional ``.env`` file.

Only the ``flows`` layer (flows, CLI) reads settings; ``db`` and ``models`` get explicit values.
"""

from __future__ import annotations

import re
from copy import copy
from dataclasses import fields
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from wikiref.db.engine import validate_database_url
from wikiref.db.schema import DEFAULT_EF_SEARCH, MAX_EF_SEARCH
from wikiref.flows.errors import UserError
from wikiref.flows.mediawiki.client import ClientConfig
from wikiref.models.article_text import DEFAULT_RECIPE, TITLE_ONLY
from wikiref.models.encode import ENCODE_BATCH_SIZE
from wikiref.models.evaluate import BOOTSTRAP_SAMPLES
from wikiref.models.finetune import OPTION_BOUNDS, LossName, Precision, Sampler, TrainingConfig
from wikiref.models.pairs import (
    DEFAULT_EVAL_FRACTION,
    DEFAULT_MAX_HELDOUT_ARTICLES,
    DEFAULT_MIN_HELDOUT_ARTICLES,
    DEFAULT_TOKEN_BUDGET,
)

# --- orchestrate: the main job's default titles --------------------------------------------------------
# Well-referenced, long-lived English Wikipedia articles across science, history, technology and nature,
# so that a first run has a few thousand references from unrelated topics to learn and query.
DEFAULT_PIPELINE_TITLES: tuple[str, ...] = (
    "Albert Einstein",
    "Marie Curie",
    "Charles Darwin",
    "Alan Turing",
    "Ada Lovelace",
    "DNA",
    "Photosynthesis",
    "Black hole",
    "Climate change",
    "Plate tectonics",
    "Vaccine",
    "Penicillin",
    "Internet",
    "Linux",
    "Python (programming language)",
    "Moon",
    "Mars",
    "Jupiter",
    "Amazon rainforest",
    "Great Barrier Reef",
    "Honey bee",
    "Tyrannosaurus",
    "Roman Empire",
    "Ancient Egypt",
    "French Revolution",
    "Industrial Revolution",
    "Printing press",
    "Renaissance",
    "Leonardo da Vinci",
    "William Shakespeare",
)


DASK_ADDRESS_PATTERN = re.compile(r"(?:(tcp|tls|ws|wss|ucx)://)?(\[[0-9A-Fa-f:]+\]|[\w.-]+)(?::(\d{1,5}))?")


def setting_error_message(error: Any) -> str:
    """A pydantic error's message without the "Value error, " that pydantic puts before a validator's own."""
    if error["type"] == "value_error" and "error" in error.get("ctx", {}):
        return str(error["ctx"]["error"])
    return error["msg"]


def check_dask_address(value: str | None) -> str | None:
    """A scheduler address with a scheme or a port at least (a bare word is a typo, found here rather than
    when a run connects); blank is None."""
    address = value.strip() if value else ""
    if not address:
        return None
    match = DASK_ADDRESS_PATTERN.fullmatch(address)
    if match is None or not (match[1] or match[3]) or (match[3] and not 0 < int(match[3]) < 65536):
        raise ValueError(
            f"not a Dask scheduler address: {address[:80]!r}; use [SCHEME://]HOST:PORT, e.g. "
            "tcp://10.0.0.5:8786 (schemes: tcp, tls, ws, wss, ucx)"
        )
    return address


def check_device(value: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices`` (``cuda:N`` standing for any GPU index), else one line listing them."""
    if value in choices or ("cuda:N" in choices and re.fullmatch(r"cuda:\d+", value)):
        return value
    raise ValueError(f"unknown device {value[:80]!r}; use one of: {', '.join(choices)}")


def check_folder(path: Path) -> Path:
    """A folder path (created later) that must not be an existing file."""
    path = path.expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a folder")
    return path


class CoreSettings(BaseSettings):
    """Where the data lives, which wiki and which base model."""

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

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        return validate_database_url(value)

    @field_validator("data_dir")
    @classmethod
    def _expand_data_dir(cls, value: Path) -> Path:
        path = check_folder(value)
        # Created here, so that a path that cannot be a folder (under a file, under /proc) is one settings
        # error at start-up rather than an OSError wherever the first file is written.
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(
                f"cannot use {path} as the data folder: {exc.strerror} ({exc.filename})"
            ) from None
        return path

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

    @property
    def checkpoints_dir(self) -> Path:
        return self.data_dir / "checkpoints"


# The client's etiquette defaults, stated by the MediaWiki library (ClientConfig) and read here.
_CLIENT_DEFAULTS = {client_field.name: client_field.default for client_field in fields(ClientConfig)}


class ScrapeSettings(BaseSettings):
    """MediaWiki client etiquette and batching (WIKIREF_SCRAPE_*, WIKIREF_WIKI, WIKIREF_PAGEVIEWS_URL)."""

    scrape_requests_per_second: float = Field(
        default=_CLIENT_DEFAULTS["requests_per_second"],
        gt=0,
        le=1000,
        description="Request-rate limit per process towards the MediaWiki API (retries included).",
    )
    scrape_concurrency: int = Field(
        default=_CLIENT_DEFAULTS["concurrency"],
        ge=1,
        le=64,
        description="Requests in flight at once per scraping client.",
    )
    scrape_max_retries: int = Field(
        default=_CLIENT_DEFAULTS["max_retries"],
        ge=0,
        le=20,
        description="Retries of one request (429/5xx/timeouts/resets) before giving up.",
    )
    scrape_request_timeout: float = Field(
        default=_CLIENT_DEFAULTS["request_timeout"],
        gt=0,
        le=600,
        description="Seconds to wait for one response (read timeout).",
    )
    scrape_maxlag: int | None = Field(
        default=_CLIENT_DEFAULTS["maxlag"],
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
    scrape_max_reference_shrink: float = Field(
        default=0.5,
        ge=0,
        lt=1,
        description="Share of an article's stored references a new revision may drop; one that drops more (or all) "
        "is quarantined instead of written.",
    )
    scrape_history_embedding_days: int | None = Field(
        default=None,
        ge=0,
        description="Days the embeddings of removed (history) references are kept; a refresh prunes older ones. "
        "Unset: kept until `wikiref corpus prune`.",
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


# Named recipes: the knobs each one sets. "default" is what the TrainKnobs defaults are (chosen by
# bench/train_bench.py, docs/training.md); "reference" is sentence-transformers' reference recipe (batch 8, plain
# sampler, MNRL, title -> chunk), kept to compare against: its hyperparameters are TrainingConfig's defaults, which
# TrainKnobs also reads for the knobs both recipes share.
_REFERENCE = TrainingConfig()
RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "reference": {
        **{
            name: getattr(_REFERENCE, name)
            for name in (
                "batch_size",
                "sampler",
                "loss",
                "symmetric",
                "hard_negatives",
                "learning_rate",
                "epochs",
                "max_pairs",
            )
        },
        "target": "chunk",
        "article_text": TITLE_ONLY.name,
        "wise_ft": False,
        "precision": "fp32",
    },
}


class TrainKnobs(BaseModel):
    """The knobs of a training run, declared once.

    ``Settings`` has each as ``train_<name>`` (WIKIREF_TRAIN_<NAME>), ``wikiref train`` as ``--<name>``, the
    ``train_model`` flow as a parameter; each rule is validated here, with the numeric bounds that
    ``wikiref.models.finetune.OPTION_BOUNDS`` states for TrainingConfig too.
    """

    # inf and nan pass gt/ge bounds (inf > 0) and would only fail deep in training.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    recipe: Literal["default", "reference"] = Field(
        default="default",
        description="A named set of knobs: 'reference' is sentence-transformers' reference recipe (batch 8, plain "
        "sampler, title -> chunk); knobs given explicitly still apply on top.",
    )
    epochs: float = Field(
        default=_REFERENCE.epochs,
        **OPTION_BOUNDS["epochs"],
        description="Passes over the training pairs; with max_pairs above 0 the run stops at max_pairs pairs first.",
    )
    max_pairs: int = Field(
        default=4096,
        **OPTION_BOUNDS["max_pairs"],
        description="Train on at most this many pairs of a shuffled epoch, so that a run's time does not grow "
        "with the corpus (4,096: 19.6-22.0 minutes of training on a 2-core CPU, docs/training.md); 0: every pair, "
        "epochs times.",
    )
    batch_size: int = Field(
        default=64,
        **OPTION_BOUNDS["batch_size"],
        description="Pairs per batch (batch - 1 in-batch negatives).",
    )
    learning_rate: float = Field(
        default=1e-4, **OPTION_BOUNDS["learning_rate"], description="Peak learning rate (linear decay)."
    )
    warmup_ratio: float = Field(
        default=_REFERENCE.warmup_ratio,
        **OPTION_BOUNDS["warmup_ratio"],
        description="Fraction of steps to warm up over.",
    )
    sampler: Sampler = Field(
        default="no_duplicates",
        description="'no_duplicates': an anchor at most once per batch; 'no_shared_source' also keeps out a "
        "reference whose source (DOI, URL, text) another article of the batch cites: no false negatives.",
    )
    loss: LossName = Field(
        default="cached_mnrl", description="'cached_mnrl' (GradCache): large batches in flat memory."
    )
    mini_batch_size: int = Field(
        default=_REFERENCE.mini_batch_size,
        **OPTION_BOUNDS["mini_batch_size"],
        description="Mini-batch of cached_mnrl.",
    )
    symmetric: bool = Field(
        default=True, description="Also train reference -> article (as articles_for_reference answers)."
    )
    target: Literal["reference", "chunk"] = Field(
        default="reference", description="Train on single references or on chunks of consecutive ones."
    )
    article_text: str = Field(
        default=DEFAULT_RECIPE.name,
        description="What an article is, for training and serving: 'title' or 'title+leadN' (first N lead words).",
    )
    wise_ft: bool = Field(
        default=False,
        description="Mix the trained weights with the base model's (WiSE-FT), the weight chosen on validation "
        "articles (10% of the training side, never the held-out ones).",
    )
    hard_negatives: bool = Field(
        default=_REFERENCE.hard_negatives,
        description="One negative per pair, mined with the base model among the references of other training "
        "articles, skipping any that shares a source (DOI, URL, text) with the anchor's article or scores above "
        "95% of the pair's positive. Costs a base-model encoding of the training side and 1.5x the texts a step "
        "encodes.",
    )
    seed: int = Field(
        default=_REFERENCE.seed, description="Seed of shuffling, batch sampling and the bootstrap."
    )
    max_seq_length: int = Field(
        default=_REFERENCE.max_seq_length,
        **OPTION_BOUNDS["max_seq_length"],
        description="Tokens kept per text.",
    )
    precision: Precision = Field(
        default=_REFERENCE.precision,
        description="auto: bf16/fp16 on CUDA; bf16 autocast on a CPU with AMX-BF16 or AVX512-BF16, else fp32.",
    )
    chunk_token_budget: int = Field(
        default=DEFAULT_TOKEN_BUDGET,
        ge=1,
        le=254,
        description="Chunks join consecutive references up to this many tokens (chunk targets, chunk metrics).",
    )
    eval_fraction: float = Field(
        default=DEFAULT_EVAL_FRACTION,
        gt=0,
        lt=1,
        description="Share of articles held out for evaluation (chosen by title hash, stable as the corpus grows).",
    )
    min_heldout_articles: int = Field(
        default=DEFAULT_MIN_HELDOUT_ARTICLES,
        ge=0,
        description="Hold out at least this many articles (at most half): fewer cannot tell a gain from noise.",
    )
    max_heldout_articles: int = Field(
        default=DEFAULT_MAX_HELDOUT_ARTICLES,
        ge=0,
        description="Evaluate at most this many held-out articles, those of lowest title hash (and as many "
        "validation articles): evaluation time and memory stay flat as the corpus grows. Held-out articles "
        "beyond it are neither evaluated nor trained on. 0: no cap.",
    )
    gate_metric: Literal["ndcg@10", "ref_to_title_acc@1"] = Field(
        default="ndcg@10",
        description="Held-out metric of the gate: article -> single references NDCG@10, or reference -> "
        "article accuracy@1.",
    )
    gate_min_vs_base: float = Field(
        default=0.0,
        description="Promote only if the 95% CI's lower bound of the gate-metric delta vs the base model is above "
        "this.",
    )
    gate_min_vs_active: float = Field(
        default=0.0,
        description="... and vs the active version at least this (negative: allow a small loss).",
    )
    bootstrap_samples: int = Field(
        default=BOOTSTRAP_SAMPLES, ge=100, description="Resamples of the paired bootstrap."
    )
    device: Annotated[
        str, AfterValidator(lambda value: check_device(value, ("auto", "cpu", "cuda", "cuda:N", "mps")))
    ] = Field(default="auto", description="auto, cpu, cuda, cuda:N or mps.")
    save_steps: int = Field(
        default=_REFERENCE.save_steps,
        **OPTION_BOUNDS["save_steps"],
        description="Checkpoint interval in steps (for --resume-from).",
    )

    @field_validator("article_text")
    @classmethod
    def _check_article_text(cls, value: str) -> str:
        from wikiref.models.article_text import ArticleTextRecipe

        return ArticleTextRecipe.from_name(value).name

    @model_validator(mode="after")
    def _check_heldout_cap(self) -> TrainKnobs:
        if 0 < self.max_heldout_articles < max(self.min_heldout_articles, 2):
            raise ValueError(
                f"max_heldout_articles ({self.max_heldout_articles}) must be 0 (no cap) or at least "
                f"min_heldout_articles ({self.min_heldout_articles}) and 2"
            )
        return self

    def training_config(self, *, max_steps: int | None = None) -> TrainingConfig:
        """The hyperparameters ``wikiref.models.finetune.train`` takes."""
        fields = set(TrainingConfig.__dataclass_fields__)
        return TrainingConfig(
            **{k: v for k, v in self.model_dump().items() if k in fields}, max_steps=max_steps
        )


def _check_train_knobs(settings: BaseSettings) -> BaseSettings:
    # The knobs' own validators (device, article_text, ...) run on TrainKnobs: name the variable that broke one.
    try:
        TrainKnobs(**{name: getattr(settings, f"train_{name}") for name in TrainKnobs.model_fields})
    except ValidationError as exc:
        raise ValueError(
            "; ".join(
                f"WIKIREF_TRAIN_{'_'.join(map(str, error['loc'])).upper()}: {setting_error_message(error)}"
                if error["loc"]
                else setting_error_message(error)
                for error in exc.errors()
            )
        ) from None
    settings.train_knobs()
    return settings


TrainSettings = create_model(
    "TrainSettings",
    __base__=BaseSettings,
    __doc__="Fine-tuning and the promotion gate: every TrainKnobs field as train_<name> (WIKIREF_TRAIN_<NAME>).",
    __validators__={"_check_train_knobs": model_validator(mode="after")(_check_train_knobs)},
    **{f"train_{name}": (knob.annotation, copy(knob)) for name, knob in TrainKnobs.model_fields.items()},
)


def _train_knobs(self: BaseSettings, **overrides: Any) -> TrainKnobs:
    """The settings' knobs, the named recipe's values on top, then the non-None ``overrides``."""
    values = {name: getattr(self, f"train_{name}") for name in TrainKnobs.model_fields}
    given = {name: value for name, value in overrides.items() if value is not None}
    recipe = given.get("recipe", values["recipe"])
    if recipe not in RECIPES:
        raise UserError(f"unknown training recipe {recipe!r}: use one of {', '.join(RECIPES)}")
    try:
        return TrainKnobs(**{**values, **RECIPES[recipe], **given})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'knobs'}: {setting_error_message(e)}" for e in exc.errors()
        )
        raise UserError(f"bad training options: {problems}") from None


TrainSettings.train_knobs = _train_knobs

TrainOverrides = create_model(
    "TrainOverrides",
    __doc__="The TrainKnobs a caller sets for one run; a knob left empty (None) keeps its setting.",
    **{
        name: (knob.annotation | None, Field(default=None, description=knob.description))
        for name, knob in TrainKnobs.model_fields.items()
    },
)


class EmbedSettings(BaseSettings):
    """Encoding, HNSW indexes and query recall (WIKIREF_EMBED_*, WIKIREF_HNSW_*)."""

    embed_backend: Literal["auto", "torch", "onnx", "openvino"] = Field(
        default="auto",
        description="Encoder runtime: torch (fp32, CPU or CUDA), onnx (int8, needs `pip install 'wikiref[fast]'`), "
        "openvino (bf16 where the CPU has it, else fp32; CPU only; needs `pip install 'wikiref[openvino]'`), "
        "or auto = the fastest installed: on the CPU openvino where it has bf16, else onnx, else torch; on CUDA torch. "
        "Queries are encoded with the same backend.",
    )
    embed_device: Annotated[
        str, AfterValidator(lambda value: check_device(value, ("cpu", "cuda", "cuda:N")))
    ] = Field(default="cpu", description="cpu, cuda or cuda:N.")
    embed_batch_size: int = Field(
        default=ENCODE_BATCH_SIZE, ge=1, le=4096, description="Texts per forward pass."
    )
    embed_chunk_size: int = Field(
        default=1024,
        ge=1,
        le=100_000,
        description="Texts per encoding task (the unit a Dask cluster fans out) and per COPY transaction.",
    )
    embed_page_size: int = Field(
        default=20_000,
        ge=1,
        le=1_000_000,
        description="Pending rows read per keyset page: the embed run holds one page of texts in memory, "
        "whatever the corpus size.",
    )
    embed_threads: int | None = Field(default=None, ge=1, description="Encoder threads; unset: one per core.")
    hnsw_m: int = Field(default=16, ge=2, le=100, description="HNSW graph degree of new indexes.")
    hnsw_ef_construction: int = Field(
        default=128, ge=4, le=1000, description="HNSW build-time candidate list (at least 2 x m)."
    )
    hnsw_ef_search: int = Field(
        default=DEFAULT_EF_SEARCH,
        ge=1,
        le=MAX_EF_SEARCH,
        description="hnsw.ef_search the SQL functions use (raised to k when k is larger); recorded per version.",
    )
    embed_maintenance_work_mem: str = Field(
        default="512MB",
        pattern=r"^\d+\s*(kB|MB|GB)$",
        description="maintenance_work_mem for HNSW builds: a graph that does not fit builds far slower.",
    )

    embed_storage: Literal["vector", "halfvec"] = Field(
        default="vector",
        description="Element type of a version's HNSW indexes: vector (float4) or halfvec (half the index "
        "bytes; the table keeps float4). Fixed by a version's first embed run.",
    )
    embed_parallel_maintenance_workers: int = Field(
        default=2,
        ge=0,
        le=64,
        description="max_parallel_maintenance_workers for HNSW builds: workers besides the leader process "
        "(0: serial). The embedded server allows up to 8; an external one caps it by its max_parallel_workers.",
    )

    @model_validator(mode="after")
    def _check_hnsw(self) -> EmbedSettings:
        if self.hnsw_ef_construction < 2 * self.hnsw_m:
            raise ValueError(
                f"hnsw_ef_construction ({self.hnsw_ef_construction}) must be at least 2 x hnsw_m ({self.hnsw_m})"
            )
        return self

    embed_cache_dir: Path | None = Field(
        default=None, description="Where exported ONNX models are kept; unset: <data dir>/cache/onnx."
    )

    @field_validator("embed_cache_dir")
    @classmethod
    def _check_cache_dir(cls, value: Path | None) -> Path | None:
        return check_folder(value) if value is not None else None

    @property
    def onnx_cache_dir(self) -> Path:
        return (self.embed_cache_dir or self.data_dir / "cache" / "onnx").expanduser()


class OrchestrationSettings(BaseSettings):
    """Schedules, the task runner and the main job (WIKIREF_SCHEDULE_*, WIKIREF_DASK_*, WIKIREF_PIPELINE_TITLES)."""

    schedule_timezone: str = Field(
        default="UTC", description="IANA time zone the cron schedules of the deployments are read in."
    )
    schedule_scrape: str = Field(
        default="0 2 * * *",
        description="Cron schedule of the scrape-daily deployment (refreshes every corpus).",
    )
    schedule_train: str = Field(
        default="0 4 * * 0",
        description="Cron schedule of the train-weekly deployment (after that day's scrape).",
    )
    schedule_embed: str = Field(
        default="0 5 * * *",
        description="Cron schedule of embed-after-train: the daily catch-up that encodes newly scraped rows "
        "(it also runs whenever a train-weekly run completes).",
    )
    serve_api_wait_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="How long `wikiref serve` waits for the Prefect API at PREFECT_API_URL to answer (a server "
        "started at the same time needs a while) before it gives up.",
    )
    task_runner: Literal["default", "dask"] = Field(
        default="default",
        description="Where fan-out tasks (page fetches, encoding batches) run: each flow's own thread pool, "
        "or Dask (a LocalCluster, or the cluster at WIKIREF_DASK_ADDRESS).",
    )
    dask_address: Annotated[str | None, AfterValidator(check_dask_address)] = Field(
        default=None,
        description="Scheduler address of an existing Dask cluster, e.g. tcp://10.0.0.5:8786 (task runner dask).",
    )
    dask_workers: int | None = Field(
        default=None,
        ge=1,
        description="Worker processes of the temporary LocalCluster (default: Dask's choice).",
    )
    pipeline_titles: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PIPELINE_TITLES),
        min_length=1,
        description="Titles the pipeline scrapes from the live wiki (a JSON list), recorded as the corpus "
        "'pipeline' that scrape-daily keeps fresh.",
    )

    @field_validator("schedule_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as UTC or Europe/Berlin"
            ) from None
        return value

    @field_validator("schedule_scrape", "schedule_train", "schedule_embed")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        # Prefect's own parser, so that a value accepted here is one the server accepts; imported only when a
        # schedule is configured, to keep prefect out of commands that never schedule anything.
        from prefect.client.schemas.schedules import CronSchedule

        try:
            CronSchedule(cron=value)
        except ValueError:
            raise ValueError(f"not a cron expression: {value!r} (five fields, e.g. '0 2 * * *')") from None
        return value


class Settings(CoreSettings, ScrapeSettings, TrainSettings, EmbedSettings, OrchestrationSettings):
    """All settings, one object: each area's fields sit beside their validators in the classes above."""

    model_config = SettingsConfigDict(
        env_prefix="WIKIREF_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        allow_inf_nan=False,
    )


_UNPARSED_FIELD = re.compile(r'error parsing value for field "(\w+)"')


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except SettingsError as exc:
        # A list setting that is not JSON fails before validation, as a SettingsError with no field in its type.
        found = _UNPARSED_FIELD.search(str(exc))
        name = f"WIKIREF_{found[1].upper()}" if found else "a WIKIREF_* variable"
        reason = f"not valid JSON ({exc.__cause__})" if exc.__cause__ else str(exc)
        raise UserError(f'invalid settings: {name}: {reason}; give a JSON list, e.g. ["A", "B"]') from None
