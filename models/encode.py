"""Turn texts into normalised 384-d embeddings with a model version: length-sorted batches, three backends.

* ``torch``: the model as sentence-transformers loads it (fp32, on CPU or CUDA). Always available.
* ``onnx``: the same network exported once to ONNX, fused by onnxruntime's transformer optimizer and quantised
  to int8 (dynamic, per-channel weights), run by onnxruntime. Needs the optional extra ``wikiref[fast]``
  (onnxruntime + onnx only).
* ``openvino``: the same ONNX export (unfused, fp32 weights) compiled by the OpenVINO runtime for the CPU, run
  in bf16 where the CPU has bf16 arithmetic (AVX512-BF16 or AMX) and fp32 elsewhere, as two or more streams
  that encode length-sorted batches in parallel. Needs the optional extra ``wikiref[openvino]`` (the
  ``openvino`` runtime package + onnx; neither pulls torch or changes a pinned version). On CPUs with bf16 it is
  the fastest of the three and its vectors stay within cosine 0.9999 of fp32 (docs/scaling.md, "Encoder").

sentence-transformers' own ``[onnx]`` / ``[openvino]`` extras were measured against this project's pins and
rejected: both resolve to older sentence-transformers / transformers releases (and OpenVINO's pulls
torchvision), i.e. they would change the default install; the ``openvino`` runtime package alone does not.
Exports are cached on disk per model folder, so each worker pays for them once.

``auto`` (wikiref.flows.steps.embedding, the bench) resolves to :func:`fastest_backend`: on the CPU, openvino where it is
installed and the CPU has bf16, else onnx where installed, else torch; on a GPU, torch.

Texts are sorted by length before batching so that a batch pads to similar lengths (the cost of a transformer
batch grows with its longest member); results come back in the caller's order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from wikiref.models.errors import ModelError

# Texts per forward pass: the embed run's default (WIKIREF_EMBED_BATCH_SIZE), and what evaluation and hard-negative
# mining encode with.
ENCODE_BATCH_SIZE = 64

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "openvino")
Progress = Callable[[int, int], None]
"""Called with (texts done, texts in all) after every batch."""


class EncoderUnavailable(ModelError):
    """The chosen backend cannot run here (missing optional dependency, unsupported device)."""


@dataclass(frozen=True)
class EncoderConfig:
    model_path: str
    backend: str = "torch"
    device: str = "cpu"
    cache_dir: str | None = None
    """Where the onnx and openvino backends keep their exported models (default: a folder in the temp dir)."""
    threads: int | None = None
    """Intra-op threads (None: the runtime's default, one per core)."""


def fast_backend_available() -> bool:
    """Whether the onnx backend's extra, ``wikiref[fast]``, is installed."""
    return find_spec("onnxruntime") is not None and find_spec("onnx") is not None


def openvino_available() -> bool:
    """Whether the openvino backend's extra, ``wikiref[openvino]``, is installed."""
    return find_spec("openvino") is not None and find_spec("onnx") is not None


@lru_cache(maxsize=1)
def openvino_cpu_has_bf16() -> bool:
    """Whether OpenVINO can run bf16 arithmetic on this CPU (AVX512-BF16 or AMX); False without openvino."""
    if not openvino_available():
        return False
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def fastest_backend(device: str = "cpu") -> str:
    """What ``auto`` means on ``device``: the fastest backend installed (measured in docs/scaling.md).

    On the CPU: openvino in bf16 where the CPU has bf16 (5.9x plain fp32 and 1.5x onnx int8 in one run on a
    loaded 2-core AVX512-BF16 machine), then onnx int8, then torch. OpenVINO without bf16 runs fp32 and is slower
    than onnx int8, so it is chosen only with bf16. On a GPU: torch, which runs there (4,865 texts/s on an H200
    against 807 for onnx int8 on the 16 cores of its host, which is where onnxruntime's CPU package runs it;
    bench/results/encode-cuda-h200.json, encoder-backends-16core-xeon.json).
    """
    if device != "cpu":
        return "torch"
    if openvino_cpu_has_bf16():
        return "openvino"
    if fast_backend_available():
        return "onnx"
    return "torch"


def length_sorted_batches(texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
    """Index arrays of ``texts`` in batches of similar length, longest first.

    Character length stands in for token length: it needs no tokenizer pass and orders nearly the same.
    Longest first so that an out-of-memory batch shows up at once, not at the end.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = np.argsort([-len(text) for text in texts], kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


class Encoder:
    """Encodes texts into L2-normalised float32 vectors; subclasses run one group of batches."""

    group_batches = 1
    """Length-sorted batches handed to the backend per call; progress is reported after each call."""

    def __init__(self, config: EncoderConfig) -> None:
        self.config = config

    def encode(
        self, texts: Sequence[str], *, batch_size: int = ENCODE_BATCH_SIZE, progress: Progress | None = None
    ) -> np.ndarray:
        texts = list(texts)
        result = np.empty((len(texts), self.dimension), dtype=np.float32)
        batches = length_sorted_batches(texts, batch_size)
        done = 0
        for start in range(0, len(batches), self.group_batches):
            indices = np.concatenate(batches[start : start + self.group_batches])
            result[indices] = self._encode_group([texts[i] for i in indices], batch_size)
            done += len(indices)
            if progress:
                progress(done, len(texts))
        norms = np.linalg.norm(result, axis=1, keepdims=True)
        return result / np.maximum(norms, 1e-12)

    @property
    def dimension(self) -> int:
        """Length of the vectors this model gives (the database checks it against its column)."""
        raise NotImplementedError

    def _encode_group(self, texts: list[str], batch_size: int) -> np.ndarray:
        raise NotImplementedError


class TorchEncoder(Encoder):
    # sentence-transformers' encode() sorts by length and batches by itself; 16 batches per call amortise its
    # fixed cost per call, and progress comes every 16 batches.
    group_batches = 16

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        import torch
        from sentence_transformers import SentenceTransformer

        if config.threads:
            torch.set_num_threads(config.threads)
        # fp32 on CUDA too: MiniLM-L6 is so small that a GPU waits on tokenisation, not on arithmetic; fp16
        # (model.half(), fp16 weights, autocast) measured no faster on an H100, 0.2-1.1x of fp32 (docs/benchmarks.md).
        self.model = SentenceTransformer(config.model_path, device=config.device)
        self.model.eval()

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    def _encode_group(self, texts: list[str], batch_size: int) -> np.ndarray:
        return self.model.encode(
            texts,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        ).astype(np.float32)


def _max_seq_length(model_path: Path, tokenizer) -> int:
    config = model_path / "sentence_bert_config.json"
    if config.exists():
        length = json.loads(config.read_text()).get("max_seq_length")
        if length:
            return int(length)
    return min(int(tokenizer.model_max_length), 512)


def _export_key(model_path: Path, runtime_version: str) -> str:
    """A cache folder name: the model folder, its weight files' sizes and times, and the runtime's version."""
    weights = sorted(model_path.glob("*.safetensors")) + sorted(model_path.glob("*.bin"))
    stamp = [str(model_path.resolve()), runtime_version]
    stamp += [f"{path.name}:{path.stat().st_size}:{path.stat().st_mtime_ns}" for path in weights]
    return hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:16]


def _export_onnx_fp32(model_path: Path, target: Path):
    """Export the model (encoder, its pooling, normalisation) to ONNX at ``target``, fp32, unfused.

    Returns the transformers config of the encoder (for the fusion step's head count and width).
    """
    import torch
    from sentence_transformers import SentenceTransformer

    # Eager attention exports as plain MatMul/Softmax, which onnxruntime's optimizer fuses into its Attention op
    # and OpenVINO reads as it is.
    model = SentenceTransformer(str(model_path), device="cpu", model_kwargs={"attn_implementation": "eager"})
    model.eval()
    names = list(model.tokenizer.model_input_names)

    class _Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            features = self.model(dict(zip(names, inputs)))
            return torch.nn.functional.normalize(features["sentence_embedding"], p=2, dim=1)

    sample = model.tokenizer(["an example", "a longer example sentence"], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.onnx.export(
            _Wrapped(),
            tuple(sample[name] for name in names),
            str(target),
            dynamo=False,
            input_names=names,
            output_names=["embedding"],
            dynamic_axes={
                **{name: {0: "batch", 1: "sequence"} for name in names},
                "embedding": {0: "batch"},
            },
            opset_version=17,
        )
    return model[0].auto_model.config


def export_onnx_int8(model_path: Path, cache_dir: Path) -> Path:
    """Export the model (encoder, its pooling, normalisation) to ONNX, fuse and quantise it; cached."""
    import onnxruntime

    target = cache_dir / _export_key(model_path, onnxruntime.__version__) / "model_int8.onnx"
    if target.exists():
        return target
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        raw, fused, quantised = (Path(work) / name for name in ("raw.onnx", "fused.onnx", "int8.onnx"))
        hidden = _export_onnx_fp32(model_path, raw)
        optimize_model(
            str(raw), model_type="bert", num_heads=hidden.num_attention_heads, hidden_size=hidden.hidden_size
        ).save_model_to_file(str(fused))
        # Per-channel weights keep cosine to the fp32 model near 0.99; per-tensor drops it to about 0.94.
        # Measured and not better (docs/scaling.md): reduce_range, uint8 weights, static QDQ int8 calibrated on
        # reference texts (cosine 0.79-0.82 with every MatMul quantised).
        quantize_dynamic(
            str(fused),
            str(quantised),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={
                "DefaultTensorType": 1
            },  # FLOAT, for outputs of fused ops shape inference can't type
        )
        os.replace(quantised, target)  # atomic: concurrent workers never load a half-written file
    log.info("exported %s to %s", model_path, target)
    return target


def export_openvino(model_path: Path, cache_dir: Path) -> Path:
    """Export the model to ONNX and convert it to OpenVINO IR (``model.xml`` + ``model.bin``, fp32); cached.

    The precision is chosen when the IR is compiled (bf16 or fp32), so one IR serves every CPU.
    """
    import openvino

    folder = cache_dir / _export_key(model_path, f"openvino {openvino.__version__}")
    target = folder / "model.xml"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as work:
        raw, xml = Path(work) / "raw.onnx", Path(work) / "model.xml"
        _export_onnx_fp32(model_path, raw)
        # fp32 weights: compressing them to fp16 would round them before the bf16/fp32 compute sees them.
        openvino.save_model(openvino.convert_model(str(raw)), str(xml), compress_to_fp16=False)
        # The weights first, the graph last: model.xml existing means the pair is complete (atomic renames).
        os.replace(xml.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(xml, target)
    log.info("exported %s to %s", model_path, target)
    return target


class _ExportedEncoder(Encoder):
    """A backend that runs an export of a local model folder with the model's own tokenizer."""

    def _load_tokenizer(self, backend: str) -> tuple[Path, Path]:
        """Load the tokenizer and its max length; the model folder and the export cache folder."""
        from transformers import AutoTokenizer

        model_path = Path(self.config.model_path)
        if not model_path.is_dir():
            raise EncoderUnavailable(
                f"the {backend} backend needs a local model folder, got {self.config.model_path!r}"
            )
        cache_dir = (
            Path(self.config.cache_dir)
            if self.config.cache_dir
            else Path(tempfile.gettempdir()) / "wikiref-onnx"
        )
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        self.max_length = _max_seq_length(model_path, self.tokenizer)
        return model_path, cache_dir


class OnnxEncoder(_ExportedEncoder):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        if not fast_backend_available():
            raise EncoderUnavailable("the onnx backend needs the optional extra: pip install 'wikiref[fast]'")
        import onnxruntime

        model_path, cache_dir = self._load_tokenizer("onnx")
        options = onnxruntime.SessionOptions()
        if config.threads:
            options.intra_op_num_threads = config.threads
        providers = ["CPUExecutionProvider"]
        if config.device.startswith("cuda"):
            providers.insert(0, "CUDAExecutionProvider")
        self.session = onnxruntime.InferenceSession(
            str(export_onnx_int8(model_path, cache_dir)), options, providers=providers
        )
        self.input_names = [item.name for item in self.session.get_inputs()]
        self._dimension = int(self.session.get_outputs()[0].shape[1])

    @property
    def dimension(self) -> int:
        return self._dimension

    def _encode_group(self, texts: list[str], batch_size: int) -> np.ndarray:
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
        )
        feeds = {name: encoded[name].astype(np.int64) for name in self.input_names}
        return self.session.run(None, feeds)[0]


class OpenVinoEncoder(_ExportedEncoder):
    """The fp32 IR compiled for the CPU in bf16 (fp32 where the CPU has no bf16), several streams in parallel.

    OpenVINO's THROUGHPUT hint splits the cores into streams (two of one core on a 2-core machine); each
    length-sorted batch of a group is one asynchronous request, so the streams encode different batches at once
    and the tokenizer fills the next request while they run.
    """

    group_batches = 8

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        if not openvino_available():
            raise EncoderUnavailable(
                "the openvino backend needs the optional extra: pip install 'wikiref[openvino]'"
            )
        if config.device != "cpu":
            raise EncoderUnavailable(f"the openvino backend runs on the CPU only, not on {config.device!r}")
        import openvino

        model_path, cache_dir = self._load_tokenizer("openvino")
        self.precision = "bf16" if openvino_cpu_has_bf16() else "f32"
        properties = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": "THROUGHPUT"}
        if config.threads:
            properties["INFERENCE_NUM_THREADS"] = str(config.threads)
        self.compiled = openvino.Core().compile_model(
            str(export_openvino(model_path, cache_dir)), "CPU", properties
        )
        self.input_names = [item.get_any_name() for item in self.compiled.inputs]
        self._dimension = int(self.compiled.outputs[0].get_partial_shape()[1].get_length())
        self.queue = openvino.AsyncInferQueue(
            self.compiled, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        )
        self.lock = threading.Lock()  # one queue, one callback: one group at a time per process

    @property
    def dimension(self) -> int:
        return self._dimension

    def _encode_group(self, texts: list[str], batch_size: int) -> np.ndarray:
        # The group's texts come sorted by length (Encoder.encode), so consecutive slices are its batches.
        result = np.empty((len(texts), self._dimension), dtype=np.float32)

        def done(request, rows: slice) -> None:
            result[rows] = request.get_output_tensor(0).data

        with self.lock:
            self.queue.set_callback(done)
            for start in range(0, len(texts), batch_size):
                encoded = self.tokenizer(
                    texts[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="np",
                )
                feeds = {name: encoded[name].astype(np.int64) for name in self.input_names}
                self.queue.start_async(feeds, slice(start, start + batch_size))
            self.queue.wait_all()
        return result


_LOAD_LOCK = threading.Lock()


def load_encoder(config: EncoderConfig) -> Encoder:
    """The encoder for ``config``, loaded once per process (workers reuse it across batches)."""
    # A Dask worker runs several encoding tasks at once in threads: without the lock each would load its own
    # encoder, and their first imports of transformers' lazy modules race (ImportError: cannot import name
    # 'AutoTokenizer').
    with _LOAD_LOCK:
        return _load_encoder(config)


@lru_cache(maxsize=4)
def _load_encoder(config: EncoderConfig) -> Encoder:
    if config.backend == "torch":
        return TorchEncoder(config)
    if config.backend == "onnx":
        return OnnxEncoder(config)
    if config.backend == "openvino":
        return OpenVinoEncoder(config)
    raise ValueError(f"unknown encoder backend {config.backend!r}: one of {', '.join(BACKENDS)}")


def encode_texts(
    config: EncoderConfig,
    texts: Sequence[str],
    *,
    batch_size: int = ENCODE_BATCH_SIZE,
    progress: Progress | None = None,
) -> np.ndarray:
    """Encode ``texts`` with the (cached) encoder of ``config``: (len(texts), dimension) float32, unit length."""
    return load_encoder(config).encode(texts, batch_size=batch_size, progress=progress)
