"""A setting that cannot work is refused when the settings load, in one line naming the variable (issue 27,
items 10 and 11)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.flows.test_cli_bad_input import one_error_line
from wikiref.flows.cli import _settings_error
from wikiref.flows.errors import UserError
from wikiref.flows.settings import get_settings


def settings_error(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        get_settings()
    except ValidationError as exc:
        return _settings_error(exc)
    except UserError as exc:
        return str(exc)
    raise AssertionError(f"{name}={value!r} was accepted")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "WIKIREF_PIPELINE_TITLES",
            "notjson",
            "invalid settings: WIKIREF_PIPELINE_TITLES: not valid JSON (Expecting value: line 1 column 1 "
            '(char 0)); give a JSON list, e.g. ["A", "B"]',
        ),
        (
            "WIKIREF_DASK_ADDRESS",
            "garbage",
            "invalid settings: WIKIREF_DASK_ADDRESS: not a Dask scheduler address: 'garbage'; use "
            "[SCHEME://]HOST:PORT, e.g. tcp://10.0.0.5:8786 (schemes: tcp, tls, ws, wss, ucx)",
        ),
        (
            "WIKIREF_DASK_ADDRESS",
            "tcp://host:99999",
            "invalid settings: WIKIREF_DASK_ADDRESS: not a Dask scheduler address: 'tcp://host:99999'",
        ),
        (
            "WIKIREF_TRAIN_LEARNING_RATE",
            "inf",
            "invalid settings: WIKIREF_TRAIN_LEARNING_RATE: Input should be a finite number",
        ),
        (
            "WIKIREF_TRAIN_LEARNING_RATE",
            "0",
            "invalid settings: WIKIREF_TRAIN_LEARNING_RATE: Input should be greater than 0",
        ),
        (
            "WIKIREF_TRAIN_GATE_MIN_VS_BASE",
            "nan",
            "invalid settings: WIKIREF_TRAIN_GATE_MIN_VS_BASE: Input should be a finite number",
        ),
        (
            "WIKIREF_SERVE_API_WAIT_SECONDS",
            "inf",
            "invalid settings: WIKIREF_SERVE_API_WAIT_SECONDS: Input should be a finite number",
        ),
        (
            "WIKIREF_TRAIN_DEVICE",
            "tpu",
            "invalid settings: WIKIREF_TRAIN_DEVICE: unknown device 'tpu'; use one of: auto, cpu, cuda, cuda:N, mps",
        ),
        (
            "WIKIREF_EMBED_DEVICE",
            "mps",
            "invalid settings: WIKIREF_EMBED_DEVICE: unknown device 'mps'; use one of: cpu, cuda, cuda:N",
        ),
        (
            "WIKIREF_EMBED_CACHE_DIR",
            "/etc/passwd",
            "invalid settings: WIKIREF_EMBED_CACHE_DIR: /etc/passwd is a file, not a folder",
        ),
    ],
)
def test_a_setting_that_cannot_work_is_refused_at_load(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    assert settings_error(monkeypatch, name, value).startswith(message)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WIKIREF_DASK_ADDRESS", "tcp://10.0.0.5:8786"),
        ("WIKIREF_DASK_ADDRESS", "scheduler:8786"),
        ("WIKIREF_DASK_ADDRESS", "tls://[::1]:8786"),
        ("WIKIREF_TRAIN_DEVICE", "cuda:1"),
        ("WIKIREF_TRAIN_DEVICE", "mps"),
        ("WIKIREF_EMBED_DEVICE", "cuda"),
    ],
)
def test_valid_values_still_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    assert str(getattr(get_settings(), name.removeprefix("WIKIREF_").lower())) == value


@pytest.mark.parametrize(
    ("name", "value", "start"),
    [
        ("WIKIREF_PIPELINE_TITLES", "notjson", "invalid settings: WIKIREF_PIPELINE_TITLES: not valid JSON"),
        ("WIKIREF_TRAIN_DEVICE", "tpu", "invalid settings: WIKIREF_TRAIN_DEVICE: unknown device 'tpu'"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(run_cli, name: str, value: str, start: str) -> None:
    result = run_cli("db", "status", env={name: value})
    assert one_error_line(result).startswith(start)


def test_the_dask_address_option_is_checked_like_the_setting(run_cli) -> None:
    result = run_cli("run", "embed", "--dask-address", "garbage")
    assert one_error_line(result).startswith(
        "--dask-address 'garbage': not a Dask scheduler address: 'garbage'; use [SCHEME://]HOST:PORT"
    )
