"""Network access: one bounded HTTP client (timeouts, deadlines, size limits, redirects, retries,
credential hygiene) shared by the model providers and the node kinds that call APIs."""

from genarun.net.http import HttpClient, HttpPolicy, HttpResponse
from genarun.net.http_errors import HttpError

__all__ = ["HttpClient", "HttpError", "HttpPolicy", "HttpResponse"]
