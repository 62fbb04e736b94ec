"""A default lives in one place (issue 26): the settings' defaults are what the libraries and the database use."""

from sqlalchemy import Engine, text

from wikiref.flows.settings import Settings


def setting_default(name: str):
    return Settings.model_fields[name].default


def column_default(connection, table: str, column: str) -> str:
    return connection.execute(
        text(
            "SELECT column_default FROM information_schema.columns "
            "WHERE table_name = :table AND column_name = :column"
        ),
        {"table": table, "column": column},
    ).scalar_one()


def test_a_version_without_a_recorded_ef_search_uses_the_settings_default(engine: Engine) -> None:
    with engine.begin() as connection:
        ef_search = column_default(connection, "embedding_states", "ef_search")
        # No embedding_states row for version -1: the function's own fallback, raised to k = 1 at least.
        fallback = connection.execute(text("SELECT wikiref.set_ef_search(-1, 1)")).scalar_one()
    assert int(ef_search) == fallback == setting_default("hnsw_ef_search")


def test_the_databases_article_text_default_is_the_title_only_recipe(engine: Engine) -> None:
    # db/ may not import models/: the column default of versions trained before leads were stored is 'title',
    # which must stay the name of the title-only recipe.
    from wikiref.models.article_text import TITLE_ONLY

    with engine.begin() as connection:
        article_text = column_default(connection, "model_versions", "article_text")
    assert article_text == f"'{TITLE_ONLY.name}'::text"


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
