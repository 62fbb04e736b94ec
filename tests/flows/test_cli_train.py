import re

import pytest
from sqlalchemy.orm import Session

from db import registry
from db.engine import make_engine

pytestmark = pytest.mark.slow


def versions(url: str) -> dict[str, tuple[str, str | None]]:
    engine = make_engine(url)
    with Session(engine) as session:
        rows = {v.name: (v.status, v.status_reason) for v in registry.list_versions(session=session)}
    engine.dispose()
    return rows


def test_train_promotes_the_first_version_keeps_a_worse_one_as_candidate_and_models_manages_them(
    run_cli, loaded_database_url: str
) -> None:
    env = {"WIKIREF_DATABASE_URL": loaded_database_url, "HF_HUB_OFFLINE": "1"}
    first = run_cli("train", "--max-steps", "2", "--limit-articles", "30", "--device", "cpu", env=env)
    assert first.returncode == 0, first.stderr
    assert "pairs: " in first.stdout and "step 1/2 loss" in first.stdout
    assert re.search(r"ndcg@10 +│ +0\.\d{4} +│ +0\.\d{4}", first.stdout)
    assert "promoted to active: no active version" in first.stdout
    (good,) = versions(loaded_database_url)

    # A learning rate this high wrecks the model; a different held-out fraction makes the run evaluate the
    # active version's artifact on its own held-out set instead of reusing stored metrics.
    worse = run_cli(
        "train",
        "--max-steps",
        "2",
        "--limit-articles",
        "30",
        "--learning-rate",
        "0.05",
        "--device",
        "cpu",
        env={**env, "WIKIREF_TRAIN_EVAL_FRACTION": "0.3"},
    )
    assert worse.returncode == 0, worse.stderr
    assert "stays candidate" in worse.stdout
    rows = versions(loaded_database_url)
    (bad,) = set(rows) - {good}
    assert rows[good][0] == "active"
    assert rows[bad][0] == "candidate"
    assert re.fullmatch(
        rf"ndcg@10 0\.\d{{4}} < 0\.\d{{4}} of active {good} on the same held-out set", rows[bad][1]
    )

    listing = run_cli("models", "list", env=env)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.index(bad) < listing.stdout.index(good)
    shown = run_cli("models", "show", good, env=env)
    assert (
        "status" not in shown.stderr and f"{good}" in shown.stdout and "dataset fingerprint:" in shown.stdout
    )

    promoted = run_cli("models", "promote", bad, env=env)
    assert promoted.returncode == 0, promoted.stderr
    assert f"{bad} is active; {good} is superseded" in promoted.stdout
    refused = run_cli("models", "retire", bad, env=env)
    assert refused.returncode == 2
    assert (
        refused.stderr.strip().splitlines()[-1]
        == f"wikiref: error: {bad} is the active version: promote another version before retiring it"
    )
    retired = run_cli("models", "retire", good, env=env)
    assert retired.returncode == 0, retired.stderr
    assert {name: status for name, (status, _) in versions(loaded_database_url).items()} == {
        good: "retired",
        bad: "active",
    }
    unknown = run_cli("models", "show", "nope", env=env)
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines()[-1].startswith("wikiref: error: no model version 'nope'")
    bad_option = run_cli("train", "--gate-metric", "accuracy", env=env)
    assert bad_option.returncode == 2
    assert bad_option.stderr.strip().splitlines() == [
        "wikiref: error: unknown gate metric 'accuracy': use one of ndcg@10, mrr@10, recall@1, recall@10, map@100, "
        "ref_to_title_acc@1"
    ]
