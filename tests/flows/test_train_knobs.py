"""The training knobs are declared once (TrainKnobs): settings, CLI options and the flow parameter follow it."""

import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from wikiref.flows.errors import UserError
from wikiref.flows.settings import RECIPES, Settings, TrainKnobs, TrainOverrides
from wikiref.models.errors import TrainingError
from wikiref.models.finetune import OPTION_BOUNDS, TrainingConfig


def test_every_knob_is_a_setting_an_option_and_a_flow_parameter() -> None:
    from prefect.utilities.callables import parameter_schema

    from wikiref.flows.cli import app
    from wikiref.flows.train import train_model

    options = {param.name: param for param in typer.main.get_command(app).commands["train"].params}
    assert CliRunner().invoke(app, ["train", "--help"]).exit_code == 0
    schema = parameter_schema(train_model).model_dump()
    overrides = schema["definitions"]["TrainOverrides"]["properties"]
    for name, knob in TrainKnobs.model_fields.items():
        assert f"train_{name}" in Settings.model_fields
        assert Settings.model_fields[f"train_{name}"].default == knob.default
        assert f"--{name.replace('_', '-')}" in options[name].opts
        assert (
            options[name].help
            == f"{knob.description} [setting WIKIREF_TRAIN_{name.upper()}, default: {knob.default}]"
        )
        assert overrides[name]["description"] == knob.description
    assert set(overrides) == set(TrainKnobs.model_fields) == set(TrainOverrides.model_fields)


def test_the_knobs_and_the_training_config_refuse_the_same_values() -> None:
    # One value just outside each bound: refused by the settings' knob and by TrainingConfig alike.
    outside = {"ge": lambda limit: limit - 1, "gt": lambda limit: limit, "le": lambda limit: limit + 1}
    outside["lt"] = outside["gt"]
    checked = 0
    for name, bounds in OPTION_BOUNDS.items():
        for kind, limit in bounds.items():
            value = outside[kind](limit)
            with pytest.raises(TrainingError, match=f"{name} must be"):
                TrainingConfig(**{name: value})
            if name in TrainKnobs.model_fields:
                with pytest.raises(ValidationError, match=name):
                    TrainKnobs(**{name: value})
                checked += 1
    assert checked >= 9
    assert TrainKnobs(max_seq_length=8).training_config().max_seq_length == 8


def test_a_recipe_sets_its_knobs_the_run_overrides_them_and_bad_knobs_fail_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WIKIREF_TRAIN_LEARNING_RATE", "2e-4")
    settings = Settings()
    assert settings.train_knobs().learning_rate == 2e-4
    reference = settings.train_knobs(recipe="reference", batch_size=16, sampler=None)
    expected = {**settings.train_knobs().model_dump(), **RECIPES["reference"], "recipe": "reference"}
    assert reference.model_dump() == {**expected, "batch_size": 16}
    assert reference.batch_size == 16 and reference.sampler == "batch"
    with pytest.raises(UserError, match=r"^bad training options: article_text: unknown article text"):
        settings.train_knobs(article_text="title+summary")
    with pytest.raises(UserError, match="batch_size: Input should be greater than or equal to 2"):
        settings.train_knobs(batch_size=1)


def test_the_held_out_cap_is_zero_or_at_least_the_floor() -> None:
    settings = Settings()
    assert settings.train_knobs().max_heldout_articles == 1000
    assert settings.train_knobs(max_heldout_articles=0).max_heldout_articles == 0
    assert settings.train_knobs(max_heldout_articles=50, min_heldout_articles=50).max_heldout_articles == 50
    with pytest.raises(UserError, match=r"max_heldout_articles \(49\) must be 0 \(no cap\) or at least"):
        settings.train_knobs(max_heldout_articles=49, min_heldout_articles=50)


def test_hard_negatives_reach_the_training_config_from_the_setting_the_cli_and_the_flow_parameter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from wikiref.flows.cli import app, train_commands
    from wikiref.flows.settings import get_settings
    from wikiref.flows.steps import training

    assert Settings().train_knobs().training_config().hard_negatives is False
    monkeypatch.setenv("WIKIREF_TRAIN_HARD_NEGATIVES", "true")
    settings = Settings()
    assert settings.train_knobs().training_config().hard_negatives is True
    # The reference recipe is sentence-transformers' own: no mined negatives, whatever the setting.
    assert settings.train_knobs(recipe="reference").training_config().hard_negatives is False
    monkeypatch.delenv("WIKIREF_TRAIN_HARD_NEGATIVES")

    # The flow's parameter, as train_model passes it on.
    flow_knobs = TrainOverrides(hard_negatives=True).model_dump(exclude_none=True)
    assert training.TrainRequest.from_settings(Settings(), flow_knobs).config.hard_negatives is True

    requests: list[training.TrainRequest] = []

    class Stop(Exception):
        pass

    def run_training(engine, request, **kwargs):
        requests.append(request)
        raise Stop

    monkeypatch.setattr(train_commands, "prepare_database", lambda settings: (None, None))
    monkeypatch.setattr(training, "run_training", run_training)
    get_settings.cache_clear()
    try:
        for flag, expected in (("--hard-negatives", True), ("--no-hard-negatives", False), (None, False)):
            result = CliRunner().invoke(app, ["train", "--device", "cpu", *([flag] if flag else [])])
            assert isinstance(result.exception, Stop), result.output
            assert requests[-1].config.hard_negatives is expected, flag
    finally:
        get_settings.cache_clear()
