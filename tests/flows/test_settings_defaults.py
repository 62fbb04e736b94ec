"""A default lives in one place (issue 26): the settings' defaults are what the libraries and the database use."""

from sqlalchemy import Engine, text

from wikiref.flows.settings import Settings


def setting_default(name: str):
    return Settings.model_fields[name].default


def test_a_version_without_a_recorded_ef_search_uses_the_settings_default(engine: Engine) -> None:
    with engine.begin() as connection:
        column_default = connection.execute(
            text(
                "SELECT column_default FROM information_schema.columns "
                "WHERE table_name = 'embedding_states' AND column_name = 'ef_search'"
            )
        ).scalar_one()
        # No embedding_states row for version -1: the function's own fallback, raised to k = 1 at least.
        fallback = connection.execute(text("SELECT wikiref.set_ef_search(-1, 1)")).scalar_one()
    assert int(column_default) == fallback == setting_default("hnsw_ef_search")


def test_the_databases_article_text_default_is_the_title_only_recipe(engine: Engine) -> None:
    # db/ may not import models/: the column default of versions trained before leads were stored is 'title',
    # which must stay the name of the title-only recipe.
    from wikiref.models.article_text import TITLE_ONLY

    with engine.begin() as connection:
        column_default = connection.execute(
            text(
                "SELECT column_default FROM information_schema.columns "
                "WHERE table_name = 'model_versions' AND column_name = 'article_text'"
            )
        ).scalar_one()
    assert column_default == f"'{TITLE_ONLY.name}'::text"


def test_the_scrape_and_training_settings_default_to_what_the_libraries_do_by_themselves() -> None:
    import inspect
    from dataclasses import fields

    from wikiref.flows.mediawiki.client import ClientConfig
    from wikiref.models.encode import encode_texts
    from wikiref.models.evaluate import paired_bootstrap
    from wikiref.models.finetune import TrainingConfig

    # A client built with no etiquette given behaves as one built from the default settings.
    client = {field.name: field.default for field in fields(ClientConfig)}
    for name in ("requests_per_second", "concurrency", "max_retries", "request_timeout", "maxlag"):
        assert setting_default(f"scrape_{name}") == client[name], name
    assert setting_default("train_bootstrap_samples") == (
        inspect.signature(paired_bootstrap).parameters["samples"].default
    )
    assert (
        setting_default("embed_batch_size")
        == inspect.signature(encode_texts).parameters["batch_size"].default
    )
    # The knobs the default and the reference recipe share are TrainingConfig's defaults.
    reference = TrainingConfig()
    for name in (
        "epochs",
        "warmup_ratio",
        "mini_batch_size",
        "seed",
        "max_seq_length",
        "precision",
        "save_steps",
    ):
        assert setting_default(f"train_{name}") == getattr(reference, name), name
