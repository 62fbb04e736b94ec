"""Turn texts into normalised 384-d embeddings with a model version: length-sorted batches, two backends.

* ``torch``: the model as sentence-transformers loads it (fp32, on CPU or CUDA). Always available.
* ``onnx``: the same network exported once to ONNX, fused by onnxruntime's transformer optimizer and quantised
  to int8 (dynamic, per-channel weights), run by onnxruntime. Needs the optional extra ``wikiref[fast]``
  (onnxruntime + onnx only). sentence-transformers' own ``[onnx]`` / ``[openvino]`` extras were measured
  against this project's pins and rejected: both resolve to older sentence-transformers / transformers releases
  (and OpenVINO pulls torchvision), i.e. they would change the default install. The export is cached on disk
  per model folder, so each worker pays for it once.

Texts are sorted by length before batching so that a batch pads to similar lengths (the cost of a transformer
batch grows with its longest member); results come back in the caller's order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from models.errors import ModelError

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx")
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
    """Where the onnx backend keeps its exported models (default: a folder in the system temp dir)."""
    threads: int | None = None
    """Intra-op threads (None: the runtime's default, one per core)."""


def fast_backend_available() -> bool:
    return find_spec("onnxruntime") is not None and find_spec("onnx") is not None


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
        self, texts: Sequence[str], *, batch_size: int = 64, progress: Progress | None = None
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


def _export_key(model_path: Path) -> str:
    import onnxruntime

    weights = sorted(model_path.glob("*.safetensors")) + sorted(model_path.glob("*.bin"))
    stamp = [str(model_path.resolve()), onnxruntime.__version__]
    stamp += [f"{path.name}:{path.stat().st_size}:{path.stat().st_mtime_ns}" for path in weights]
    return hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:16]


def export_onnx_int8(model_path: Path, cache_dir: Path) -> Path:
    """Export the model (encoder, its pooling, normalisation) to ONNX, fuse and quantise it; cached."""
    target = cache_dir / _export_key(model_path) / "model_int8.onnx"
    if target.exists():
        return target
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
    from sentence_transformers import SentenceTransformer

    # Eager attention exports as plain MatMul/Softmax, which onnxruntime's optimizer fuses into its Attention op.
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
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        raw, fused, quantised = (Path(work) / name for name in ("raw.onnx", "fused.onnx", "int8.onnx"))
        with torch.no_grad():
            torch.onnx.export(
                _Wrapped(),
                tuple(sample[name] for name in names),
                str(raw),
                dynamo=False,
                input_names=names,
                output_names=["embedding"],
                dynamic_axes={
                    **{name: {0: "batch", 1: "sequence"} for name in names},
                    "embedding": {0: "batch"},
                },
                opset_version=17,
            )
        hidden = model[0].auto_model.config
        optimize_model(
            str(raw), model_type="bert", num_heads=hidden.num_attention_heads, hidden_size=hidden.hidden_size
        ).save_model_to_file(str(fused))
        # Per-channel weights keep cosine to the fp32 model near 0.99; per-tensor drops it to about 0.94.
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


class OnnxEncoder(Encoder):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        if not fast_backend_available():
            raise EncoderUnavailable("the onnx backend needs the optional extra: pip install 'wikiref[fast]'")
        import onnxruntime
        from transformers import AutoTokenizer

        model_path = Path(config.model_path)
        if not model_path.is_dir():
            raise EncoderUnavailable(
                f"the onnx backend needs a local model folder, got {config.model_path!r}"
            )
        cache_dir = (
            Path(config.cache_dir) if config.cache_dir else Path(tempfile.gettempdir()) / "wikiref-onnx"
        )
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        self.max_length = _max_seq_length(model_path, self.tokenizer)
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


@lru_cache(maxsize=4)
def load_encoder(config: EncoderConfig) -> Encoder:
    """The encoder for ``config``, loaded once per process (workers reuse it across batches)."""
    if config.backend == "torch":
        return TorchEncoder(config)
    if config.backend == "onnx":
        return OnnxEncoder(config)
    raise ValueError(f"unknown encoder backend {config.backend!r}: one of {', '.join(BACKENDS)}")


def encode_texts(
    config: EncoderConfig, texts: Sequence[str], *, batch_size: int = 64, progress: Progress | None = None
) -> np.ndarray:
    """Encode ``texts`` with the (cached) encoder of ``config``: (len(texts), dimension) float32, unit length."""
    return load_encoder(config).encode(texts, batch_size=batch_size, progress=progress)
