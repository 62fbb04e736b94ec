from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

from wikiref.models.base import BASE_MODEL_ID, resolve_model_path


def test_hub_id_of_base_model_loads_offline_with_384_normalised_dims(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = resolve_model_path(BASE_MODEL_ID)
    assert Path(path, "modules.json").exists()
    model = SentenceTransformer(path, device="cpu")
    embeddings = model.encode(["Cat", "Felis catus is a small domesticated carnivorous mammal."])
    assert embeddings.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)


def test_local_folder_and_other_hub_ids_pass_through(tmp_path: Path) -> None:
    assert resolve_model_path(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_model_path("intfloat/e5-small-v2") == "intfloat/e5-small-v2"
