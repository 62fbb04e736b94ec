"""Fine-tune a sentence-transformers model on (article text, reference) pairs.

Reads as the numbered steps of sentence-transformers' training examples: model, data, loss, arguments, train,
save. Evaluation before and after lives in ``wikiref.models.evaluate`` so the caller can evaluate the base model, the
new model and the active one on the same held-out set.
"""

from __future__ import annotations

import functools
import logging
import operator
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from wikiref.models.errors import TrainingError
from wikiref.models.hard_negatives import mine_hard_negatives
from wikiref.models.pairs import Pair, TrainPairs
from wikiref.models.sources import source_keys

log = logging.getLogger(__name__)

Sampler = Literal["batch", "no_duplicates", "no_shared_source"]
LossName = Literal["mnrl", "cached_mnrl"]
SAMPLERS: tuple[Sampler, ...] = ("batch", "no_duplicates", "no_shared_source")
LOSSES: tuple[LossName, ...] = ("mnrl", "cached_mnrl")
Precision = Literal["auto", "fp32", "bf16", "fp16"]
# step, total steps, the Trainer's log entry of that step ({} when it logged nothing)
ProgressCallback = Callable[[int, int, dict[str, float]], None]

# The bounds of the numeric options, stated once: TrainingConfig checks them, and the settings' fields
# (wikiref.flows.settings.TrainKnobs) take them as their pydantic bounds (ge, gt, le, lt).
OPTION_BOUNDS: dict[str, dict[str, float]] = {
    "epochs": {"gt": 0},
    "batch_size": {"ge": 2},  # in-batch negatives: at least one other pair
    "learning_rate": {"gt": 0},
    "warmup_ratio": {"ge": 0, "lt": 1},
    "max_steps": {"ge": 1},
    "max_pairs": {"ge": 0},  # 0: every pair
    "mini_batch_size": {"ge": 1},
    "max_seq_length": {"ge": 8, "le": 512},  # 512: the position embeddings of MiniLM-sized BERT models
    "save_steps": {"ge": 1},
}
_BOUND_CHECKS = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}
_BOUND_WORDS = {"ge": "at least", "gt": "above", "le": "at most", "lt": "below"}


def _bound_problems(values: dict[str, Any]) -> list[str]:
    """One line per option of ``values`` outside its OPTION_BOUNDS (None: not set, nothing to check)."""
    problems = []
    for name, bounds in OPTION_BOUNDS.items():
        value = values.get(name)
        if value is None or all(_BOUND_CHECKS[kind](value, limit) for kind, limit in bounds.items()):
            continue
        allowed = " and ".join(f"{_BOUND_WORDS[kind]} {limit}" for kind, limit in bounds.items())
        problems.append(f"{name} must be {allowed}, got {value}")
    return problems


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters; the defaults are the reference recipe (``RECIPES["reference"]``)."""

    epochs: float = 1.0
    batch_size: int = 8
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.0
    lr_scheduler: str = "linear"
    max_steps: int | None = None
    # Pairs a run trains on at most (0: all, epochs times): the run stops after ceil(max_pairs / batch_size)
    # steps of a shuffled epoch, so its time does not grow with the corpus.
    max_pairs: int = 0
    sampler: Sampler = "batch"
    loss: LossName = "mnrl"
    # Only for cached_mnrl: the batch is embedded in pieces this big, so memory stays flat as batch_size grows.
    mini_batch_size: int = 32
    scale: float = 20.0
    # Also rank the articles of the batch for each reference (reference -> article), as articles_for_reference.
    symmetric: bool = False
    # One negative per pair, mined with the base model among the other training articles' references
    # (wikiref.models.hard_negatives): a third column every anchor of the batch ranks against.
    hard_negatives: bool = False
    seed: int = 42
    max_grad_norm: float = 1.0
    max_seq_length: int = 256
    precision: Precision = "auto"
    logging_steps: int | None = None
    save_steps: int = 500

    def __post_init__(self) -> None:
        problems = _bound_problems(asdict(self))
        if self.sampler not in SAMPLERS:
            problems.append(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.loss not in LOSSES:
            problems.append(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if problems:
            raise TrainingError("; ".join(problems))

    def as_params(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainingResult:
    artifact_path: Path
    loss_log: list[dict[str, float]]
    steps: int
    train_pairs: int
    seconds: float
    samples_per_second: float
    device: str
    precision: str
    params: dict[str, Any] = field(default_factory=dict)


def resolve_device(device: str) -> str:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an explicit device must be available."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device {device!r} asked for, but torch {torch.__version__} sees no CUDA GPU")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise TrainingError(f"device must be auto, cpu, cuda[:N] or mps, got {device!r}")
    return device


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX-BF16 or AVX512-BF16; Linux's /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: Precision, device: str) -> str:
    """Mixed precision where it speeds up training: bf16 on CUDA GPUs that have it (else fp16), and bf16
    autocast on CPUs that compute bf16 natively (1.7x fp32 on a 2-core AMX machine, docs/training.md)."""
    import torch

    if precision != "auto":
        if precision == "fp16" and not device.startswith("cuda"):
            raise TrainingError(f"fp16 training needs a CUDA device, not {device}")
        if precision == "bf16" and device == "mps":
            raise TrainingError("bf16 training needs a CUDA device or the CPU, not mps")
        return precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if device == "cpu" and cpu_has_bf16() else "fp32"


class NoSharedSourceBatchSampler:
    """Batches in which no pair's target is relevant to another anchor of the batch (see source_aware_sampler).

    A module-level class (not a closure) because the Trainer pickles its arguments, sampler included, into every
    checkpoint.
    """

    def __init__(
        self,
        dataset: Sequence[Any],
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: Any = None,
        seed: int = 0,
        *,
        has: Sequence[frozenset[str]],
        owns: Sequence[frozenset[str]],
    ) -> None:
        self.size, self.batch_size, self.drop_last, self.seed = len(dataset), batch_size, drop_last, seed
        self.has, self.owns, self.epoch = has, owns, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.batch_size if self.drop_last else -(-self.size // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        import torch

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        remaining = torch.randperm(self.size, generator=generator).tolist()
        while remaining:
            batch: list[int] = []
            batch_has: set[str] = set()
            batch_owns: set[str] = set()
            waiting: list[int] = []
            for position, index in enumerate(remaining):
                if len(batch) == self.batch_size:
                    waiting.extend(remaining[position:])
                    break
                if batch_owns.isdisjoint(self.has[index]) and batch_has.isdisjoint(self.owns[index]):
                    batch.append(index)
                    batch_has |= self.has[index]
                    batch_owns |= self.owns[index]
                else:
                    waiting.append(index)
            remaining = waiting
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield batch


def source_aware_sampler(
    pairs: Sequence[Pair], negatives: Sequence[str] | None = None
) -> Callable[..., NoSharedSourceBatchSampler]:
    """A batch sampler factory: no batch holds a pair whose target is also relevant to another anchor in it.

    Pair j conflicts with pair i when they share an anchor, or j's target (or j's hard negative, one per pair in
    ``negatives``: every anchor of the batch ranks it too) cites a source that i's article cites (DOI, URL or
    normalised text): in-batch negatives then never include a false negative. Like sentence-transformers'
    no-duplicates sampler, a conflicting pair waits for a later batch.
    """
    target_keys = [frozenset(source_keys(pair.chunk)) for pair in pairs]
    article_keys: dict[str, set[str]] = {}
    for pair, keys in zip(pairs, target_keys, strict=True):
        article_keys.setdefault(pair.anchor, {"anchor:" + pair.anchor}).update(keys)
    has = [keys | {"anchor:" + pair.anchor} for pair, keys in zip(pairs, target_keys, strict=True)]
    if negatives is not None:
        has = [keys | source_keys(negative) for keys, negative in zip(has, negatives, strict=True)]
    owns = [frozenset(article_keys[pair.anchor]) for pair in pairs]
    return functools.partial(NoSharedSourceBatchSampler, has=has, owns=owns)


def wise_ft(model, base_model: str, weight: float) -> None:
    """WiSE-FT: replace ``model``'s weights by ``weight`` * fine-tuned + (1 - weight) * base, in place."""
    from sentence_transformers import SentenceTransformer

    base = SentenceTransformer(base_model, device="cpu").state_dict()
    mixed = {
        key: (weight * value + (1 - weight) * base[key].to(value.device))
        if value.is_floating_point()
        else value
        for key, value in model.state_dict().items()
    }
    model.load_state_dict(mixed)


def _progress_callback(on_progress: ProgressCallback):
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            on_progress(state.global_step, state.max_steps, {})

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                on_progress(state.global_step, state.max_steps, dict(logs))

    return Progress()


def _loss(model, config: TrainingConfig):
    """In-batch negatives, cosine similarity scaled by 20 as in the reference recipe. A negative column adds every
    pair's negative to the references each article text ranks (query_to_doc); doc_to_query ranks the batch's
    article texts for each positive only, as without one."""
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )
    from sentence_transformers.util import cos_sim

    directions = ("query_to_doc", "doc_to_query") if config.symmetric else ("query_to_doc",)
    if config.loss == "cached_mnrl":
        return CachedMultipleNegativesRankingLoss(
            model,
            scale=config.scale,
            similarity_fct=cos_sim,
            mini_batch_size=config.mini_batch_size,
            directions=directions,
        )
    return MultipleNegativesRankingLoss(
        model, scale=config.scale, similarity_fct=cos_sim, directions=directions
    )


def _arguments(
    config: TrainingConfig,
    *,
    train_pairs: int,
    checkpoint_dir: Path,
    batch_sampler: Any,
    device: str,
    precision: str,
    quiet: bool,
):
    """The Trainer's arguments, the run's total steps, and whether ``max_pairs`` capped them."""
    from sentence_transformers import SentenceTransformerTrainingArguments

    steps_per_epoch = -(-train_pairs // config.batch_size)
    total_steps = config.max_steps or int(steps_per_epoch * config.epochs + 0.999)
    budget_steps = -(-config.max_pairs // config.batch_size)
    capped = 0 < budget_steps < total_steps
    if capped:
        total_steps = budget_steps
    logging_steps = config.logging_steps or max(1, min(50, total_steps // 20))
    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=config.epochs,
        max_steps=total_steps if capped else (config.max_steps or -1),
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # transformers 5 reads a float below 1 as a ratio of all steps
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        data_seed=config.seed,
        batch_sampler=batch_sampler,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        logging_steps=logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=1,
        report_to="none",
        disable_tqdm=quiet,
        dataloader_drop_last=False,
    )
    return args, total_steps, capped


def _loss_log(log_history: list[dict[str, float]]) -> list[dict[str, float]]:
    """The Trainer's logged losses, one entry per logging step."""
    return [
        {
            "step": entry["step"],
            "epoch": round(entry.get("epoch", 0.0), 4),
            "loss": round(entry["loss"], 5),
            "learning_rate": entry.get("learning_rate", 0.0),
        }
        for entry in log_history
        if "loss" in entry
    ]


def train(
    *,
    base_model: str,
    pairs: Sequence[Pair],
    output_dir: Path,
    checkpoint_dir: Path,
    config: TrainingConfig = TrainingConfig(),
    device: str = "auto",
    resume_from_checkpoint: Path | None = None,
    on_progress: ProgressCallback | None = None,
) -> TrainingResult:
    """Train on ``pairs`` and save the model to ``output_dir``, which must not exist yet.

    ``base_model`` is what ``SentenceTransformer()`` loads (a folder or hub id). Checkpoints go to
    ``checkpoint_dir`` every ``config.save_steps`` steps and are removed once the final model is saved;
    ``resume_from_checkpoint`` continues an interrupted run from one of them (same pairs and config).
    """
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.base.sampler import BatchSamplers

    if not pairs:
        raise TrainingError("no training pairs: load articles with references first (wikiref scrape)")
    if output_dir.exists() and any(output_dir.iterdir()):
        raise TrainingError(f"{output_dir} already holds a model; every run writes to a new folder")
    if resume_from_checkpoint is not None and not Path(resume_from_checkpoint, "trainer_state.json").exists():
        raise TrainingError(f"{resume_from_checkpoint} is not a training checkpoint (no trainer_state.json)")
    device = resolve_device(device)
    precision = resolve_precision(config.precision, device)

    # 1. Model
    model = SentenceTransformer(base_model, device=device)
    model.max_seq_length = config.max_seq_length

    # 2. Data: (anchor, positive) columns, in the order the pair builder made them; the sampler shuffles. Pairs
    # on disk (wikiref.models.pairs.TrainPairs) are memory-mapped as they are, never copied into memory.
    if isinstance(pairs, TrainPairs):
        train_dataset = pairs.dataset()
    else:
        train_dataset = Dataset.from_dict(
            {"anchor": [pair.anchor for pair in pairs], "positive": [pair.chunk for pair in pairs]}
        )
    mined = None
    if config.hard_negatives:
        # Mined with the model as loaded, before any step: the base model. Every pair gets one, whether or not
        # max_pairs lets the run reach it, so that which pairs train stays the sampler's choice alone. The
        # column is held in memory (beside the memory-mapped anchor and positive): about a reference's length
        # per pair.
        mined = mine_hard_negatives(pairs, model, seed=config.seed)
        train_dataset = train_dataset.add_column("negative", mined.negatives)

    # 3. Loss
    loss = _loss(model, config)

    # 4. Arguments. The source-aware sampler reads every pair's source keys into memory: built only when asked.
    samplers = {
        "batch": lambda: BatchSamplers.BATCH_SAMPLER,
        "no_duplicates": lambda: BatchSamplers.NO_DUPLICATES,
        "no_shared_source": lambda: source_aware_sampler(pairs, mined.negatives if mined else None),
    }
    args, total_steps, capped = _arguments(
        config,
        train_pairs=len(pairs),
        checkpoint_dir=checkpoint_dir,
        batch_sampler=samplers[config.sampler](),
        device=device,
        precision=precision,
        quiet=on_progress is not None,
    )

    # 5. Train
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        loss=loss,
        callbacks=[_progress_callback(on_progress)] if on_progress else None,
    )
    if on_progress:
        from transformers.trainer_callback import PrinterCallback

        # The caller reports progress and loss itself; the Trainer would also print every log dict.
        trainer.remove_callback(PrinterCallback)
    log.info(
        "training %s on %d pairs%s: %d steps of %d%s (%s sampler, %s loss) on %s in %s",
        base_model,
        len(pairs),
        " with hard negatives" if mined else "",
        total_steps,
        config.batch_size,
        f", capped by max_pairs {config.max_pairs}" if capped else "",
        config.sampler,
        config.loss,
        device,
        precision,
    )
    started = time.perf_counter()
    output = trainer.train(
        resume_from_checkpoint=str(resume_from_checkpoint) if resume_from_checkpoint else None
    )
    seconds = time.perf_counter() - started

    # 6. Save the final model into its own new folder; checkpoints only serve an interrupted run.
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(output_dir), create_model_card=False)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)

    # 7. Report
    loss_log = _loss_log(trainer.state.log_history)
    samples_per_second = float(output.metrics.get("train_samples_per_second", 0.0))
    log.info(
        "trained %d steps in %.1f s (%.1f samples/s), final logged loss %s; saved to %s",
        trainer.state.global_step,
        seconds,
        samples_per_second,
        loss_log[-1]["loss"] if loss_log else "n/a",
        output_dir,
    )
    return TrainingResult(
        artifact_path=output_dir,
        loss_log=loss_log,
        steps=trainer.state.global_step,
        train_pairs=len(pairs),
        seconds=seconds,
        samples_per_second=samples_per_second,
        device=device,
        precision=precision,
        params={
            **config.as_params(),
            "device": device,
            "precision": precision,
            **(
                {
                    "hard_negative_seconds": round(mined.seconds, 1),
                    "hard_negative_fallbacks": mined.fallbacks,
                }
                if mined
                else {}
            ),
        },
    )
