"""wikiref.models.encode with the real base model: the three backends, batching by length, progress, caching of exports,
what ``auto`` picks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import wikiref.models.encode as encode_module
from wikiref.models.base import BASE_MODEL_ID, resolve_model_path
from wikiref.models.encode import (
    EncoderConfig,
    EncoderUnavailable,
    OpenVinoEncoder,
    encode_texts,
    export_onnx_int8,
    export_openvino,
    fastest_backend,
    length_sorted_batches,
    load_encoder,
    openvino_cpu_has_bf16,
)

TEXTS = [
    'Smith, J. (2001). "The domestic cat". Journal of Feline Studies. 12 (3): 45–67. doi:10.1000/xyz.',
    "Cat",
    '"Go at Google: Language Design in the Service of Software Engineering". golang.org. Retrieved 2013-06-19.',
    "Pike, Rob (2012). Go. YouTube.",
    "United States Census Bureau (2010). Population of Yankton, South Dakota.",
    "Eleanor Rigby",
    "Lennon, John; McCartney, Paul (1966). Revolver. Parlophone. The song's lyrics describe loneliness.",
]


@pytest.fixture(scope="module", autouse=True)
def offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def model_path() -> str:
    return resolve_model_path(BASE_MODEL_ID)


def test_batches_cover_every_text_once_longest_first() -> None:
    texts = ["a" * length for length in (5, 50, 1, 30, 30, 7, 100)]
    batches = length_sorted_batches(texts, 3)
    assert [len(batch) for batch in batches] == [3, 3, 1]
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(texts)))
    lengths = [[len(texts[i]) for i in batch] for batch in batches]
    assert lengths == [[100, 50, 30], [30, 7, 5], [1]]
    with pytest.raises(ValueError, match="batch_size must be positive"):
        length_sorted_batches(texts, 0)


def test_torch_encoder_gives_unit_384_d_vectors_in_the_callers_order(model_path: str) -> None:
    from sentence_transformers import SentenceTransformer

    calls = []
    vectors = encode_texts(
        EncoderConfig(model_path, "torch"),
        TEXTS,
        batch_size=3,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # One text at a time through plain sentence-transformers: same vectors, so the sorting was undone.
    reference = SentenceTransformer(model_path, device="cpu").encode(
        TEXTS, batch_size=1, normalize_embeddings=True
    )
    np.testing.assert_allclose((vectors * reference).sum(axis=1), 1.0, atol=1e-4)
    assert calls == [(7, 7)]  # sentence-transformers gets up to 16 batches per call
    assert encode_texts(EncoderConfig(model_path, "torch"), []).shape == (0, 384)


def test_onnx_int8_encoder_stays_close_to_fp32_and_exports_once(
    model_path: str, onnx_cache_dir: Path
) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx backend is the optional extra wikiref[fast]")
    config = EncoderConfig(model_path, "onnx", cache_dir=str(onnx_cache_dir))
    calls = []
    fast = encode_texts(config, TEXTS, batch_size=3, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(3, 7), (6, 7), (7, 7)]
    exact = encode_texts(EncoderConfig(model_path, "torch"), TEXTS, batch_size=4)
    assert fast.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    cosine = (fast * exact).sum(axis=1)
    assert cosine.min() > 0.96 and cosine.mean() > 0.98, cosine
    # Rankings survive quantisation: each title's nearest text is the same under both encoders.
    for title in (1, 5):
        assert (
            np.argsort(-(exact @ exact[title]))[:2].tolist() == np.argsort(-(fast @ fast[title]))[:2].tolist()
        )

    exported = export_onnx_int8(Path(model_path), onnx_cache_dir)
    stamp = exported.stat().st_mtime_ns
    assert export_onnx_int8(Path(model_path), onnx_cache_dir) == exported
    assert exported.stat().st_mtime_ns == stamp


def test_bad_backend_or_model_is_refused(model_path: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown encoder backend 'tensorflow'"):
        load_encoder(EncoderConfig(model_path, "tensorflow"))
    pytest.importorskip("onnxruntime", reason="the onnx backend is the optional extra wikiref[fast]")
    with pytest.raises(EncoderUnavailable, match="needs a local model folder"):
        load_encoder(EncoderConfig("some/hub-model", "onnx", cache_dir=str(tmp_path)))


def test_openvino_encoder_agrees_with_fp32_and_exports_once(model_path: str, onnx_cache_dir: Path) -> None:
    pytest.importorskip("openvino", reason="the openvino backend is the optional extra wikiref[openvino]")
    config = EncoderConfig(model_path, "openvino", cache_dir=str(onnx_cache_dir))
    calls = []
    fast = encode_texts(config, TEXTS, batch_size=2, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(7, 7)]  # four batches of two, one group of up to eight batches
    exact = encode_texts(EncoderConfig(model_path, "torch"), TEXTS, batch_size=4)
    assert fast.shape == (len(TEXTS), 384) and fast.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    # bf16 arithmetic (fp32 where the CPU has none) over fp32 weights: far closer to fp32 than int8 is.
    cosine = (fast * exact).sum(axis=1)
    assert cosine.min() > 0.999, cosine
    # More batches than a group holds, in parallel requests: every text lands in its own row.
    vectors = encode_texts(config, TEXTS * 3, batch_size=1)
    np.testing.assert_allclose((vectors * np.tile(fast, (3, 1))).sum(axis=1), 1.0, atol=2e-3)

    exported = export_openvino(Path(model_path), onnx_cache_dir)
    assert exported.name == "model.xml" and exported.with_suffix(".bin").exists()
    stamp = exported.stat().st_mtime_ns
    assert export_openvino(Path(model_path), onnx_cache_dir) == exported
    assert exported.stat().st_mtime_ns == stamp


def test_auto_is_the_fastest_installed_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from wikiref.flows.settings import Settings
    from wikiref.flows.steps.embedding import encoder_config

    expected = (
        "openvino"
        if openvino_cpu_has_bf16()
        else "onnx"
        if encode_module.fast_backend_available()
        else "torch"
    )
    assert fastest_backend() == expected
    assert encoder_config(Settings(), "some/model").backend == expected
    assert encoder_config(Settings(), "some/model", backend="torch").backend == "torch"

    monkeypatch.setattr(encode_module, "openvino_cpu_has_bf16", lambda: True)
    monkeypatch.setattr(encode_module, "fast_backend_available", lambda: True)
    assert fastest_backend("cpu") == "openvino"
    assert fastest_backend("cuda") == "torch"  # onnx int8 and OpenVINO run on the CPU only
    monkeypatch.setattr(encode_module, "openvino_cpu_has_bf16", lambda: False)  # fp32 OpenVINO < onnx int8
    assert fastest_backend("cpu") == "onnx"
    monkeypatch.setattr(encode_module, "fast_backend_available", lambda: False)
    assert fastest_backend("cpu") == "torch"


def test_openvino_backend_says_what_it_needs(
    model_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(EncoderUnavailable, match="runs on the CPU only"):
        OpenVinoEncoder(EncoderConfig(model_path, "openvino", device="cuda", cache_dir=str(tmp_path)))
    with pytest.raises(EncoderUnavailable, match="needs a local model folder"):
        OpenVinoEncoder(EncoderConfig("some/hub-model", "openvino", cache_dir=str(tmp_path)))
    monkeypatch.setattr(encode_module, "openvino_available", lambda: False)
    with pytest.raises(EncoderUnavailable, match=r"pip install 'wikiref\[openvino\]'"):
        OpenVinoEncoder(EncoderConfig(model_path, "openvino", cache_dir=str(tmp_path)))


def test_threads_loading_one_config_at_once_share_one_encoder(model_path: str, tmp_path: Path) -> None:
    # A Dask worker runs encoding tasks in threads: they must get the process's one encoder, loaded once.
    from concurrent.futures import ThreadPoolExecutor

    config = EncoderConfig(model_path, "torch", cache_dir=str(tmp_path))
    with ThreadPoolExecutor(max_workers=4) as pool:
        encoders = list(pool.map(lambda _: load_encoder(config), range(4)))
    assert all(encoder is encoders[0] for encoder in encoders)
