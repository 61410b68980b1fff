"""A refused request (HTTP 403) in one log line: who, where, and which permission was missing.

Django logs a PermissionDenied on `django.request` with its whole traceback, which says nothing
more than the view's permission check and floods the log when someone probes. The filter below
(LOGGING, on `django.request`) rewrites those records to

    Forbidden: user=<username|anonymous> path=<path> permission=<missing permission(s) or reason>
"""

from __future__ import annotations

import inspect
import logging


def _permission_checks(func) -> list[str]:
    """The permissions a view's decorators (permission_required) or class (PermissionRequiredMixin) need."""
    view_class = getattr(func, "view_class", None)
    if view_class is not None and getattr(view_class, "permission_required", None):
        required = view_class.permission_required
        return [required] if isinstance(required, str) else list(required)
    for _ in range(10):  # the chain of decorators: login_required(permission_required(...)(view))
        if func is None:
            break
        for cell in getattr(func, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            if inspect.isfunction(value) and value.__name__ == "check_perms":
                perms = inspect.getclosurevars(value).nonlocals.get("perms")
                if perms:
                    return list(perms)
        func = getattr(func, "__wrapped__", None)
    return []


def describe_denial(request, exception: BaseException | None) -> str:
    reason = str(exception or "").strip()
    if reason:
        return reason.splitlines()[0][:200]
    match = getattr(request, "resolver_match", None)
    required = _permission_checks(match.func) if match is not None else []
    user = getattr(request, "user", None)
    if required and user is not None:
        missing = [perm for perm in required if not user.has_perm(perm)]
        return ",".join(missing or required)
    return "-"


def _one_line(value: str) -> str:
    """As Django's own request log does: control characters (a %0A in the path) escaped."""
    return value.encode("unicode_escape").decode("ascii")


class OneLineForbiddenFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) != 403:
            return True
        request = getattr(record, "request", None)
        if request is None:
            return True
        exception = record.exc_info[1] if record.exc_info else None
        user = getattr(request, "user", None)
        who = user.get_username() if user is not None and user.is_authenticated else "anonymous"
        record.msg = "Forbidden: user=%s path=%s permission=%s"
        record.args = tuple(_one_line(value) for value in (who, request.path, describe_denial(request, exception)))
        record.exc_info = None
        record.exc_text = None
        return True
