"""docker-compose.yml cannot run here (no Docker engine): validate it against the Compose specification's
JSON schema (vendored by check-jsonschema) and check how the services are wired."""

import json
import re
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_file_matches_the_compose_specification(compose: dict) -> None:
    schema = json.loads(
        files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    jsonschema.validate(compose, schema)


def test_a_broken_compose_file_is_rejected() -> None:
    schema = json.loads(
        files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {"services": {"db": {"image": "x", "depends_on": {"y": {"condition": "sometimes"}}}}}, schema
        )


def test_services_wait_for_healthy_dependencies(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"db", "prefect-server", "wikiref"}
    assert services["db"]["image"].startswith("pgvector/pgvector:")
    for name in ("db", "prefect-server"):
        assert services[name]["healthcheck"]["test"], name
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert services["prefect-server"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["wikiref"]["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "prefect-server": {"condition": "service_healthy"},
    }


def test_wiring_of_urls_ports_and_volumes(compose: dict) -> None:
    services = compose["services"]
    worker_env = services["wikiref"]["environment"]
    assert re.fullmatch(
        r"postgresql://wikiref:\$\{POSTGRES_PASSWORD[^}]*\}@db:5432/wikiref",
        worker_env["WIKIREF_DATABASE_URL"],
    )
    assert worker_env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert services["wikiref"]["build"]["dockerfile"] == "Dockerfile" and (REPO / "Dockerfile").exists()
    assert services["wikiref"]["command"] == ["wikiref", "serve"]
    prefect_db = services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert prefect_db.startswith("postgresql+asyncpg://wikiref:") and prefect_db.endswith("@db:5432/prefect")
    assert any(p.endswith(":4200") for p in services["prefect-server"]["ports"])
    assert any(p.endswith(":5432") for p in services["db"]["ports"])
    init_mount = next(v for v in services["db"]["volumes"] if "docker-entrypoint-initdb.d" in v)
    assert (REPO / init_mount.split(":")[0]).is_dir()
    named = {
        v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith(".")
    }
    assert named == set(compose["volumes"]) == {"pgdata", "wikiref-data"}


def test_no_secret_is_committed(compose: dict) -> None:
    text = (REPO / "docker-compose.yml").read_text()
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?" in text
    for url in re.findall(r"postgres\S*://[^\s\"']+", text):
        assert re.search(r"://\w+:\$\{POSTGRES_PASSWORD", url), url
