"""Give each web request a correlation id for its log lines (and echo it to the client)."""

import uuid

from .log_context import correlation_id_var


class CorrelationIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = correlation_id_var.set(uuid.uuid4().hex)
        try:
            response = self.get_response(request)
            response["X-Correlation-ID"] = correlation_id_var.get()
            return response
        finally:
            correlation_id_var.reset(token)
