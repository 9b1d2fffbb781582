"""The HTTP face of Vigil: the FastAPI app (REST + OpenAPI, tokens and roles, ingest) over
the service `vigil serve` runs, and the server that runs them together."""
