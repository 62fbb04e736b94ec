"""A MediaWiki Action API server over saved pages: the offline source for tests, demos and benches.

Only this module is imported by the CLI at start-up; the server (``wikiref.flows.mirror.server``) loads when used.
"""

FAULT_KINDS = ("429", "503", "reset", "truncate", "maxlag")
