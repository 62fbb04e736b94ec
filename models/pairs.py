"""(article text, reference) pairs from plain article rows, split by article, with a fingerprint and counts.

The anchor of a pair is the article's text under an ``ArticleTextRecipe`` (title, or title + first words of the
lead); its target is either one reference or a chunk: consecutive references of one article joined until the
next one would push it over a token budget measured with the model's own tokenizer.

The split is decided per article from a hash of its title: an article is held out when its score falls below the
evaluation fraction, so it stays on the same side when the corpus grows (a held-out article of an earlier run
never becomes training data of a later one), and metrics of two versions on the same held-out set stay
comparable. Below ``min_heldout_articles`` the lowest-scoring articles are added until the floor is met: a small
corpus still gets a held-out set large enough to decide. Validation articles (for choosing a WiSE-FT mixing
weight) come out of the training side by a second, independent hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import operator
import os
import pickle
import shutil
import tempfile
import weakref
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, overload

import numpy as np

from wikiref.models.article_text import TITLE_ONLY, ArticleTextRecipe

log = logging.getLogger(__name__)

TokenCounter = Callable[[Sequence[str]], list[int]]

# 86 tokens gives chunks of about 69 tokens on the shared pages, the reference recipe's average.
DEFAULT_TOKEN_BUDGET = 86
DEFAULT_EVAL_FRACTION = 0.2
# Fewer held-out articles than this cannot tell a real gain from noise (the bootstrap CI spans the gain).
DEFAULT_MIN_HELDOUT_ARTICLES = 50
# At most this many held-out articles are evaluated (and as many validation articles): evaluation time and the
# memory of the evaluation set stay flat as the corpus grows. 1,000 articles give a paired-bootstrap CI of a few
# thousandths of NDCG@10; corpora up to ~5,000 articles (20% held out) are not affected.
DEFAULT_MAX_HELDOUT_ARTICLES = 1000
Target = Literal["chunk", "reference"]


@dataclass(frozen=True)
class ArticleTexts:
    """One article as the pair builder needs it: its title, its reference texts in page order, and its lead
    (None when the page has none or it was stored before leads were extracted)."""

    article_id: int
    title: str
    references: tuple[str, ...]
    lead: str | None = None


@dataclass(frozen=True)
class Pair:
    """One training or held-out example: ``chunk`` is the target text (a chunk or a single reference)."""

    article_id: int
    title: str
    chunk: str
    anchor: str


@dataclass(frozen=True)
class EvalArticle:
    """A held-out (or validation) article: what evaluation composes its text from, and its single references."""

    article_id: int
    title: str
    lead: str | None
    references: tuple[str, ...]
    chunks: tuple[str, ...]


@dataclass(frozen=True)
class PairSplit:
    """Training pairs and the held-out evaluation set, disjoint by article."""

    # On disk (a TrainPairs over an Arrow file) when built by build_pairs; any sequence of pairs is accepted.
    train: Sequence[Pair]
    heldout: list[Pair]
    # Single references of the held-out articles, for the reference -> title direction.
    heldout_references: list[tuple[int, str]]
    heldout_titles: dict[int, str]
    fingerprint: str
    heldout_fingerprint: str
    counts: dict[str, float] = field(default_factory=dict)
    heldout_articles: list[EvalArticle] = field(default_factory=list)
    validation_articles: list[EvalArticle] = field(default_factory=list)
    recipe: ArticleTextRecipe = TITLE_ONLY


def tokenizer_counter(model_name_or_path: str) -> TokenCounter:
    """Token counts (no special tokens) with the tokenizer of ``model_name_or_path``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)

    def count(texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    return count


def _chunks_with_tokens(
    references: Sequence[str], token_counts: Sequence[int], *, token_budget: int
) -> list[tuple[str, int]]:
    chunks: list[tuple[str, int]] = []
    current: list[str] = []
    current_tokens = 0
    for reference, tokens in zip(references, token_counts, strict=True):
        # Joining with a space adds no token for WordPiece/BPE tokenizers, so the sum is the chunk's length.
        if current and current_tokens + tokens > token_budget:
            chunks.append((" ".join(current), current_tokens))
            current, current_tokens = [], 0
        current.append(reference)
        current_tokens += tokens
    if current:
        chunks.append((" ".join(current), current_tokens))
    return chunks


def chunk_references(
    references: Sequence[str], token_counts: Sequence[int], *, token_budget: int
) -> list[str]:
    """Join consecutive references while the chunk stays within ``token_budget`` tokens.

    A single reference longer than the budget becomes a chunk of its own (the model truncates it), so no
    reference is lost.
    """
    return [chunk for chunk, _ in _chunks_with_tokens(references, token_counts, token_budget=token_budget)]


def heldout_score(title: str, salt: str = "") -> float:
    """A title's stable position in [0, 1): the article is held out when it falls below the eval fraction."""
    digest = hashlib.sha256((salt + title).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def heldout_ids_of(
    scores: dict[int, float], *, eval_fraction: float, min_heldout_articles: int = 0
) -> set[int]:
    """Articles below the fraction, topped up with the lowest scores to the floor (at most half of all)."""
    heldout = {article_id for article_id, score in scores.items() if score < eval_fraction}
    floor = min(min_heldout_articles, len(scores) // 2)
    by_score = sorted(scores, key=scores.__getitem__)
    for article_id in by_score[:floor]:
        heldout.add(article_id)
    if len(scores) >= 2:
        if not heldout:
            heldout.add(by_score[0])
        if len(heldout) == len(scores):
            heldout.discard(by_score[-1])
    return heldout


_PAIR_COLUMNS = ("anchor", "positive", "article_id", "title")
# Texts per tokenizer call: references of consecutive articles are counted together.
TOKEN_BATCH_TEXTS = 2048
_PAIRS_PER_RECORD_BATCH = 8192
_TITLES_PER_ARROW_CHUNK = 65536
# Roles of an article in the split.
_TRAIN, _HELDOUT, _RESERVED, _VALIDATION = 0, 1, 2, 3


def _pair_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("anchor", pa.string()),
            ("positive", pa.string()),
            ("article_id", pa.int64()),
            ("title", pa.string()),
        ]
    )


class TrainPairs(Sequence[Pair]):
    """Training pairs in an Arrow IPC stream file, in the order the builder made them; none held in memory.

    ``dataset()`` is the memory-mapped ``datasets.Dataset`` (anchor, positive) the trainer reads; iterating reads
    one record batch at a time; indexing reads through a memory map. ``a + b`` gives a plain list. A folder the
    builder made for the file (``owned_dir``) is removed when this object is garbage-collected.
    """

    def __init__(self, path: Path, length: int, *, owned_dir: Path | None = None) -> None:
        self.path = Path(path)
        self._length = length
        self._mapped_table = None
        self._cleanup = (
            weakref.finalize(self, shutil.rmtree, str(owned_dir), True) if owned_dir is not None else None
        )

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        return f"TrainPairs({self._length} pairs in {self.path})"

    @staticmethod
    def _pairs_of(columns: dict[str, list]) -> list[Pair]:
        return list(
            map(Pair, columns["article_id"], columns["title"], columns["positive"], columns["anchor"])
        )

    def __iter__(self) -> Iterator[Pair]:
        import pyarrow as pa

        with pa.OSFile(str(self.path)) as source:
            for batch in pa.ipc.open_stream(source):
                yield from self._pairs_of(batch.to_pydict())

    def _table(self):
        import pyarrow as pa

        if self._mapped_table is None:
            self._mapped_table = pa.ipc.open_stream(pa.memory_map(str(self.path))).read_all()
        return self._mapped_table

    @overload
    def __getitem__(self, index: int) -> Pair: ...

    @overload
    def __getitem__(self, index: slice) -> list[Pair]: ...

    def __getitem__(self, index: int | slice) -> Pair | list[Pair]:
        if isinstance(index, slice):
            positions = range(*index.indices(self._length))
            if not positions:
                return []
            return self._pairs_of(self._table().take(list(positions)).to_pydict())
        position = operator.index(index)
        if position < 0:
            position += self._length
        if not 0 <= position < self._length:
            raise IndexError(f"pair {index} of {self._length}")
        return self._pairs_of(self._table().slice(position, 1).to_pydict())[0]

    def __add__(self, other: Iterable[Pair]) -> list[Pair]:
        return [*self, *other]

    def __radd__(self, other: Iterable[Pair]) -> list[Pair]:
        return [*other, *self]

    def dataset(self):
        """The (anchor, positive) ``datasets.Dataset`` over the file, memory-mapped (no copy in memory)."""
        from datasets import Dataset

        return Dataset.from_file(str(self.path)).select_columns(["anchor", "positive"])


class _PairWriter:
    """Appends training pairs to an Arrow IPC stream file, one record batch per ``_PAIRS_PER_RECORD_BATCH``."""

    def __init__(self, path: Path) -> None:
        import pyarrow as pa

        self._pa = pa
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_stream(self._sink, _pair_schema())
        self._columns: dict[str, list] = {name: [] for name in _PAIR_COLUMNS}
        self.count = 0

    def add(self, article_id: int, title: str, anchor: str, targets: Sequence[str]) -> None:
        columns = self._columns
        columns["anchor"].extend([anchor] * len(targets))
        columns["positive"].extend(targets)
        columns["article_id"].extend([article_id] * len(targets))
        columns["title"].extend([title] * len(targets))
        self.count += len(targets)
        if len(columns["anchor"]) >= _PAIRS_PER_RECORD_BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._columns["anchor"]:
            self._writer.write_batch(self._pa.record_batch(self._columns, schema=_pair_schema()))
            self._columns = {name: [] for name in _PAIR_COLUMNS}

    def close(self) -> None:
        self._flush()
        self._writer.close()
        self._sink.close()


class _ArticleSpill:
    """Every article's title, lead, distinct references and chunks, pickled to a file in arrival order.

    In memory stays only a fixed-size index per article (offsets, id, hash scores, token sums) and its title in
    compact Arrow chunks for sorting: a few dozen bytes an article, not its texts.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "wb", buffering=1 << 20)  # closed by finish()
        self._position = 0
        self.offsets, self.sizes, self.ids = array("q"), array("q"), array("q")
        self.scores, self.validation_scores = array("d"), array("d")
        self.fixed_heldout = bytearray()
        self.chunk_tokens, self.chunk_counts = array("q"), array("q")
        self.single_tokens, self.single_counts = array("q"), array("q")
        self._titles: list[str] = []
        self._title_chunks: list = []

    def __len__(self) -> int:
        return len(self.ids)

    def add(
        self,
        article: ArticleTexts,
        singles: tuple[tuple[str, int], ...],
        chunks: list[tuple[str, int]],
        *,
        validation_score: float,
        fixed_heldout: bool,
    ) -> None:
        record = pickle.dumps(
            (article.title, article.lead, tuple(text for text, _ in singles), [text for text, _ in chunks]),
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        self._file.write(record)
        self.offsets.append(self._position)
        self.sizes.append(len(record))
        self._position += len(record)
        self.ids.append(article.article_id)
        self.scores.append(heldout_score(article.title))
        self.validation_scores.append(validation_score)
        self.fixed_heldout.append(fixed_heldout)
        self.chunk_tokens.append(sum(tokens for _, tokens in chunks))
        self.chunk_counts.append(len(chunks))
        self.single_tokens.append(sum(tokens for _, tokens in singles))
        self.single_counts.append(len(singles))
        self._titles.append(article.title)
        if len(self._titles) >= _TITLES_PER_ARROW_CHUNK:
            self._pack_titles()

    def _pack_titles(self) -> None:
        import pyarrow as pa

        if self._titles:
            self._title_chunks.append(pa.array(self._titles, type=pa.string()))
            self._titles = []

    def finish(self) -> np.ndarray:
        """Close the file; the articles' positions in title order (then id: the old builder's sort)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        self._file.close()
        self._pack_titles()
        keys = pa.table(
            {
                "title": pa.chunked_array(self._title_chunks, type=pa.string()),
                "article_id": pa.array(self.ids, type=pa.int64()),
            }
        )
        self._title_chunks = []
        # Arrow compares strings by their UTF-8 bytes, which orders them as Python does (by code point).
        return pc.sort_indices(
            keys, sort_keys=[("title", "ascending"), ("article_id", "ascending")]
        ).to_numpy()

    def read(self, descriptor: int, row: int) -> tuple[str, str | None, tuple[str, ...], list[str]]:
        return pickle.loads(os.pread(descriptor, self.sizes[row], self.offsets[row]))


def _batches_of_texts(articles: Iterable[ArticleTexts], texts: int) -> Iterator[list[ArticleTexts]]:
    """Consecutive articles in batches of at least ``texts`` references (the last may be smaller)."""
    batch: list[ArticleTexts] = []
    size = 0
    for article in articles:
        batch.append(article)
        size += len(article.references)
        if size >= texts:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _lowest(scores: np.ndarray, candidates: np.ndarray, keep: int) -> np.ndarray:
    """``candidates`` (a mask) reduced to the ``keep`` lowest ``scores``, ties in position order."""
    chosen = np.flatnonzero(candidates)
    if len(chosen) <= keep:
        return candidates
    kept = chosen[np.argsort(scores[chosen], kind="stable")[:keep]]
    reduced = np.zeros_like(candidates)
    reduced[kept] = True
    return reduced


def _roles(
    spill: _ArticleSpill,
    order: np.ndarray,
    *,
    eval_fraction: float,
    min_heldout_articles: int,
    max_heldout_articles: int,
    validation_fraction: float,
    fixed_split: bool,
) -> np.ndarray:
    """Each article's role, in title order: the rules of ``heldout_ids_of``, then the cap on evaluated ones."""
    n = len(order)
    scores = np.frombuffer(spill.scores, dtype=np.float64)[order] if n else np.zeros(0)
    if fixed_split:
        heldout = np.frombuffer(bytes(spill.fixed_heldout), dtype=np.uint8)[order].astype(bool)
    else:
        heldout = scores < eval_fraction
        by_score = np.argsort(scores, kind="stable")
        heldout[by_score[: min(min_heldout_articles, n // 2)]] = True
        if n >= 2:
            if not heldout.any():
                heldout[by_score[0]] = True
            if heldout.all():
                heldout[by_score[-1]] = False
    roles = np.full(n, _TRAIN, dtype=np.int8)
    roles[heldout] = _RESERVED
    evaluated = _lowest(scores, heldout, max_heldout_articles) if max_heldout_articles else heldout
    roles[evaluated] = _HELDOUT
    if validation_fraction > 0 and n:
        validation_scores = np.frombuffer(spill.validation_scores, dtype=np.float64)[order]
        validation = ~heldout & (validation_scores < validation_fraction)
        if max_heldout_articles:
            validation = _lowest(validation_scores, validation, max_heldout_articles)
        roles[validation] = _VALIDATION
    return roles


def _hash_line(digest, record: object) -> None:
    digest.update(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    digest.update(b"\n")


def build_pairs(
    articles: Iterable[ArticleTexts],
    *,
    count_tokens: TokenCounter,
    token_budget: int,
    eval_fraction: float,
    min_heldout_articles: int = 0,
    max_heldout_articles: int = 0,
    recipe: ArticleTextRecipe = TITLE_ONLY,
    target: Target = "chunk",
    validation_fraction: float = 0.0,
    is_heldout: Callable[[str], bool] | None = None,
    work_dir: Path | None = None,
) -> PairSplit:
    """Chunk every article's references, drop empty and duplicate chunks, and split by article.

    Articles without any non-empty reference produce no pairs and belong to neither side. At least one article
    lands on each side when there are two or more (the lowest-scoring title is held out, the highest trained).
    ``is_heldout`` replaces the hash rule by the caller's (a benchmark's fixed split). ``target`` says whether a
    training pair holds a chunk or one reference; held-out articles always keep both.

    ``max_heldout_articles`` (0: no cap) bounds the articles evaluated, held-out and validation each: the
    lowest-scoring held-out titles are evaluated, the others held out by the hash are *reserved* (neither
    trained on nor evaluated, so growing the corpus never moves a held-out article into training); validation
    articles beyond the cap train.

    Memory does not grow with the corpus beyond a few dozen bytes an article: the articles stream through once
    (references tokenized ``TOKEN_BATCH_TEXTS`` at a time) into a spill file under ``work_dir`` (default: the
    system's temporary folder), are read back in title order, and the training pairs are written to an Arrow
    file (``PairSplit.train`` is a ``TrainPairs`` over it). Only the (capped) held-out and validation articles
    are held in memory.
    """
    if token_budget < 1:
        raise ValueError(f"token_budget must be at least 1, got {token_budget}")
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be between 0 and 1 (exclusive), got {eval_fraction}")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    if min_heldout_articles < 0:
        raise ValueError(f"min_heldout_articles must be 0 or more, got {min_heldout_articles}")
    if max_heldout_articles < 0 or 0 < max_heldout_articles < max(min_heldout_articles, 2):
        raise ValueError(
            "max_heldout_articles must be 0 (no cap) or at least min_heldout_articles and 2, "
            f"got {max_heldout_articles}"
        )

    directory = Path(tempfile.mkdtemp(prefix="wikiref-pairs-", dir=work_dir))
    try:
        return _build(
            articles,
            directory,
            count_tokens=count_tokens,
            token_budget=token_budget,
            eval_fraction=eval_fraction,
            min_heldout_articles=min_heldout_articles,
            max_heldout_articles=max_heldout_articles,
            recipe=recipe,
            target=target,
            validation_fraction=validation_fraction,
            is_heldout=is_heldout,
        )
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


@dataclass
class _FirstPass:
    """The articles spilled to disk with their chunks, and what pass 1 dropped."""

    spill: _ArticleSpill
    references: int = 0
    empty_references: int = 0
    duplicate_chunks: int = 0


def _spill_articles(
    articles: Iterable[ArticleTexts],
    path: Path,
    *,
    count_tokens: TokenCounter,
    token_budget: int,
    validation_fraction: float,
    is_heldout: Callable[[str], bool] | None,
) -> _FirstPass:
    """Pass 1, streamed: normalise, count tokens a batch of articles at a time, chunk, spill to disk."""
    first = _FirstPass(_ArticleSpill(path))
    for batch in _batches_of_texts(articles, TOKEN_BATCH_TEXTS):
        kept_of = []
        for article in batch:
            first.references += len(article.references)
            references = [" ".join(text.split()) for text in article.references]
            kept = [text for text in references if text]
            first.empty_references += len(references) - len(kept)
            kept_of.append(kept)
        flat = [text for kept in kept_of for text in kept]
        counts = count_tokens(flat) if flat else []
        if len(counts) != len(flat):
            raise ValueError(f"count_tokens gave {len(counts)} counts for {len(flat)} texts")
        start = 0
        for article, kept in zip(batch, kept_of, strict=True):
            if not kept:
                continue
            tokens = counts[start : start + len(kept)]
            start += len(kept)
            chunks: list[tuple[str, int]] = []
            seen: set[str] = set()
            for chunk in _chunks_with_tokens(kept, tokens, token_budget=token_budget):
                if chunk[0] in seen:
                    first.duplicate_chunks += 1
                    continue
                seen.add(chunk[0])
                chunks.append(chunk)
            singles = tuple(dict(zip(kept, tokens, strict=True)).items())
            first.spill.add(
                article,
                singles,
                chunks,
                validation_score=heldout_score(article.title, "validation:") if validation_fraction else 1.0,
                fixed_heldout=bool(is_heldout(article.title)) if is_heldout is not None else False,
            )
    return first


@dataclass(frozen=True)
class _SecondPass:
    """The training pairs on disk, the held-out and validation articles in memory, and the fingerprints."""

    train: TrainPairs
    heldout_pairs: list[Pair]
    heldout_references: list[tuple[int, str]]
    heldout_titles: dict[int, str]
    heldout_articles: list[EvalArticle]
    validation_articles: list[EvalArticle]
    fingerprint: str
    heldout_fingerprint: str
    mean_chunk_tokens: float


def _write_pairs(
    spill: _ArticleSpill,
    order: np.ndarray,
    roles: np.ndarray,
    directory: Path,
    *,
    recipe: ArticleTextRecipe,
    target: Target,
    options: dict[str, object],
) -> _SecondPass:
    """Pass 2, in title order: fingerprints, training pairs to disk, held-out and validation articles kept.

    ``options`` are the build's options that change the pairs: the fingerprint starts with them.
    """
    writer = _PairWriter(directory / "train.arrow")
    heldout_pairs: list[Pair] = []
    heldout_references: list[tuple[int, str]] = []
    heldout_titles: dict[int, str] = {}
    heldout_articles: list[EvalArticle] = []
    validation_articles: list[EvalArticle] = []
    fingerprint, heldout_fingerprint = hashlib.sha256(), hashlib.sha256()
    _hash_line(heldout_fingerprint, {"token_budget": options["token_budget"], "recipe": recipe.name})
    _hash_line(fingerprint, options)
    chunk_tokens = chunk_count = 0
    descriptor = os.open(spill.path, os.O_RDONLY)
    try:
        for row, role in zip(order.tolist(), roles.tolist(), strict=True):
            title, lead, singles, chunks = spill.read(descriptor, row)
            article_id = spill.ids[row]
            anchor = recipe.compose(title, lead)
            # Reserved articles (held out beyond the cap) are marked null: neither trained nor evaluated.
            heldout_flag = True if role == _HELDOUT else (None if role == _RESERVED else False)
            _hash_line(fingerprint, [anchor, heldout_flag, role == _VALIDATION, chunks])
            if role == _HELDOUT:
                evaluated = EvalArticle(article_id, title, lead, singles, tuple(chunks))
                heldout_pairs.extend(Pair(article_id, title, chunk, anchor) for chunk in chunks)
                heldout_titles[article_id] = title
                heldout_articles.append(evaluated)
                _hash_line(heldout_fingerprint, [anchor, chunks])
                heldout_references.extend((article_id, text) for text in singles)
                chunk_tokens += spill.chunk_tokens[row]
                chunk_count += spill.chunk_counts[row]
            elif role == _VALIDATION:
                validation_articles.append(EvalArticle(article_id, title, lead, singles, tuple(chunks)))
            elif role == _TRAIN:
                writer.add(article_id, title, anchor, chunks if target == "chunk" else singles)
                if target == "chunk":
                    chunk_tokens += spill.chunk_tokens[row]
                    chunk_count += spill.chunk_counts[row]
                else:
                    chunk_tokens += spill.single_tokens[row]
                    chunk_count += spill.single_counts[row]
    finally:
        os.close(descriptor)
        writer.close()
    return _SecondPass(
        train=TrainPairs(directory / "train.arrow", writer.count, owned_dir=directory),
        heldout_pairs=heldout_pairs,
        heldout_references=heldout_references,
        heldout_titles=heldout_titles,
        heldout_articles=heldout_articles,
        validation_articles=validation_articles,
        fingerprint=fingerprint.hexdigest(),
        heldout_fingerprint=heldout_fingerprint.hexdigest(),
        # A chunk's tokens are the sum of its references' (chunk_references); fmean of the same integers.
        mean_chunk_tokens=round(chunk_tokens / chunk_count, 1) if chunk_count else 0.0,
    )


def _build(
    articles: Iterable[ArticleTexts],
    directory: Path,
    *,
    count_tokens: TokenCounter,
    token_budget: int,
    eval_fraction: float,
    min_heldout_articles: int,
    max_heldout_articles: int,
    recipe: ArticleTextRecipe,
    target: Target,
    validation_fraction: float,
    is_heldout: Callable[[str], bool] | None,
) -> PairSplit:
    # 1. Pass 1, streamed: every article's references and chunks, with their token counts, spilled to disk.
    first = _spill_articles(
        articles,
        directory / "articles.pickles",
        count_tokens=count_tokens,
        token_budget=token_budget,
        validation_fraction=validation_fraction,
        is_heldout=is_heldout,
    )
    spill = first.spill

    # 2. Roles: sorting by title makes the pair order, and so the fingerprint, independent of database ids and
    # row order; each article is then training, held out, reserved (held out beyond the cap) or validation.
    order = spill.finish()
    roles = _roles(
        spill,
        order,
        eval_fraction=eval_fraction,
        min_heldout_articles=min_heldout_articles,
        max_heldout_articles=max_heldout_articles,
        validation_fraction=validation_fraction,
        fixed_split=is_heldout is not None,
    )

    # 3. Pass 2, in title order: training pairs to disk, held-out and validation articles kept, fingerprints.
    options = {
        "token_budget": token_budget,
        "eval_fraction": eval_fraction,
        "min_heldout_articles": min_heldout_articles,
        "recipe": recipe.name,
        "target": target,
        "validation_fraction": validation_fraction,
    }
    second = _write_pairs(spill, order, roles, directory, recipe=recipe, target=target, options=options)
    spill.path.unlink()

    # 4. Counts, for the model card and the registry.
    reserved = int((roles == _RESERVED).sum())
    counts: dict[str, float] = {
        "articles": len(spill),
        "train_articles": len(spill)
        - len(second.heldout_titles)
        - len(second.validation_articles)
        - reserved,
        "heldout_articles": len(second.heldout_titles),
        "validation_articles": len(second.validation_articles),
        "reserved_heldout_articles": reserved,
        "references": first.references,
        "empty_references_dropped": first.empty_references,
        "duplicate_chunks_dropped": first.duplicate_chunks,
        "train_pairs": len(second.train),
        "heldout_pairs": len(second.heldout_pairs),
        "heldout_references": len(second.heldout_references),
        "mean_chunk_tokens": second.mean_chunk_tokens,
    }
    log.info(
        "pairs: %d train / %d held-out from %d + %d articles (%d held out beyond the cap); dropped %d empty "
        "references, %d duplicate chunks",
        len(second.train),
        len(second.heldout_pairs),
        counts["train_articles"],
        counts["heldout_articles"],
        reserved,
        first.empty_references,
        first.duplicate_chunks,
    )
    return PairSplit(
        train=second.train,
        heldout=second.heldout_pairs,
        heldout_references=second.heldout_references,
        heldout_titles=second.heldout_titles,
        fingerprint=second.fingerprint,
        heldout_fingerprint=second.heldout_fingerprint,
        counts=counts,
        heldout_articles=second.heldout_articles,
        validation_articles=second.validation_articles,
        recipe=recipe,
    )
