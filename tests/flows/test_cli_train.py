import json
import re

import pytest
from sqlalchemy.orm import Session

from wikiref.db import registry
from wikiref.db.engine import make_engine

pytestmark = pytest.mark.slow


def versions(url: str) -> dict[str, tuple[str, str | None]]:
    engine = make_engine(url)
    with Session(engine) as session:
        rows = {v.name: (v.status, v.status_reason) for v in registry.list_versions(session=session)}
    engine.dispose()
    return rows


def test_train_gates_each_version_on_its_ci_the_base_serves_meanwhile_and_models_manages_them(
    run_cli, loaded_database_url: str
) -> None:
    env = {"WIKIREF_DATABASE_URL": loaded_database_url, "HF_HUB_OFFLINE": "1"}
    quick = ("--limit-articles", "60", "--min-heldout-articles", "20", "--device", "cpu", "--batch-size", "8")
    first = run_cli("train", "--max-steps", "2", *quick, "--bootstrap-samples", "500", env=env)
    assert first.returncode == 0, first.stderr
    assert "pairs: " in first.stdout and "step 1/2 loss" in first.stderr
    # stderr is a pipe here, as a log file is: no progress bar frames (rich's, tqdm's from the Trainer or encode).
    assert "\r" not in first.stderr and "it/s" not in first.stderr, first.stderr
    assert max(len(line) for line in first.stderr.splitlines()) < 2000  # no line padded to an unlimited width
    # base on titles, base on the version's article text (title+lead160), fine-tuned, change and its 95% CI
    number, change = r"0\.\d{4}", r"[+-]0\.\d{4}"
    row = rf"ndcg@10 +│ +{number} +│ +{number} +│ +{number} +│ +{change} +│ +\[{change}, {change}\]"
    assert re.search(row, first.stdout), first.stdout
    rows = versions(loaded_database_url)
    (good,) = set(rows) - {"base"}
    # Two steps may or may not clear the gate; either way exactly one of the two serves.
    assert (rows["base"][0], rows[good][0]) in {("superseded", "active"), ("active", "candidate")}
    serving = good if rows[good][0] == "active" else "base"

    # A few steps at a learning rate this high wreck the model: the gate refuses it, whatever serves.
    worse = run_cli(
        "train",
        "--max-steps",
        "3",
        *quick,
        "--learning-rate",
        "0.005",
        "--batch-size",
        "16",
        "--json",
        env=env,
    )
    assert worse.returncode == 0, worse.stderr
    outcome = json.loads(worse.stdout)
    assert outcome["promoted"] is False and outcome["reason"].endswith("stays candidate")
    assert outcome["steps"] == 3 and outcome["gate_metric"] == "ndcg@10"
    rows = versions(loaded_database_url)
    (bad,) = set(rows) - {good, "base"}
    assert rows[serving][0] == "active"
    assert rows[bad][0] == "candidate"
    assert re.fullmatch(
        r"ndcg@10 vs base -0\.\d{4} \[95% CI -0\.\d{4}, -0\.\d{4}\]: the lower bound is not above \+0\.0000, "
        r"so the gain may be noise or a loss; stays candidate",
        rows[bad][1],
    )

    listing = run_cli("models", "list", env=env)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.index(bad) < listing.stdout.index(good)
    shown = run_cli("models", "show", good, env=env)
    assert (
        "status" not in shown.stderr and f"{good}" in shown.stdout and "dataset fingerprint:" in shown.stdout
    )
    # The weights the run chose and stored, and the embeddings alone beside the fused metrics.
    # The signals' columns in alphabetical order: hubness (similar_references' only), vote, words.
    assert re.search(r"articles_for_reference +│ +1 +│ +- +│ +\d", shown.stdout), shown.stdout
    assert re.search(r"similar_references +│ +1 +│ +\d\.\d+ +│ +- +│ +\d", shown.stdout), shown.stdout
    assert "the embeddings alone (fusion => false)" in shown.stdout

    promoted = run_cli("models", "promote", bad, env=env)
    assert promoted.returncode == 0, promoted.stderr
    assert f"{bad} is active; {serving} is superseded" in promoted.stdout
    refused = run_cli("models", "retire", bad, env=env)
    assert refused.returncode == 2
    assert (
        refused.stderr.strip().splitlines()[-1]
        == f"wikiref: error: {bad} is the active version: promote another version before retiring it"
    )
    retired = run_cli("models", "retire", good, env=env)
    assert retired.returncode == 0, retired.stderr
    assert versions(loaded_database_url)[good][0] == "retired"
    unknown = run_cli("models", "show", "nope", env=env)
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines()[-1].startswith("wikiref: error: no model version 'nope'")
    bad_knob = run_cli("train", "--article-text", "title+summary", env=env)
    assert bad_knob.returncode == 2
    assert (
        bad_knob.stderr.strip()
        .splitlines()[-1]
        .startswith("wikiref: error: bad training options: article_text:")
    )
