"""`genarun serve`: the ASGI app (answer webhooks; the API and pages build on it)."""
