"""Settings → the scrape client's configuration (kept free of Prefect so that the CLI starts fast)."""

from __future__ import annotations

from flows.settings import Settings
from flows.wikipedia.client import ClientConfig


def client_config(settings: Settings, api_url: str | None = None) -> ClientConfig:
    """The client's etiquette from settings; ``api_url`` overrides the configured wiki (e.g. a mirror)."""
    return ClientConfig(
        api_url=api_url or str(settings.api_url),
        user_agent=settings.user_agent,
        requests_per_second=settings.scrape_requests_per_second,
        concurrency=settings.scrape_concurrency,
        max_retries=settings.scrape_max_retries,
        request_timeout=settings.scrape_request_timeout,
        maxlag=settings.scrape_maxlag,
        pageviews_url=str(settings.pageviews_url) if settings.pageviews_url and not api_url else None,
    )
