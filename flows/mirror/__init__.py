"""A MediaWiki Action API server over saved pages: the offline source for tests, demos and benches."""
