"""The worker's web pages, by path: shared by the worker that serves them and the clients
that call them, so the clients need not load the worker (or Faust) to know where to ask."""

QUERY_PATH = "/tocsin/query"
STATUS_PATH = "/tocsin/status"
HEALTH_PATH = "/tocsin/health"
RULES_RELOAD_PATH = "/tocsin/rules/reload"
SILENCES_PATH = "/tocsin/silences"
