"""The MediaWiki library: an Action API client, title sources, and extraction from every HTML flavour and dump."""
