"""The portal's own 403 and 404 pages (portal/urls.py: handler403, handler404), with the top bar.

A 403 says what was refused and which role(s) may do it. The role rule:

1. the permissions the refused view asks for: its `permission_required` decorators, read by the same
   function that writes the one-line 403 log (sessions/accounts/denials.py), or, for a view that checks
   inside its body, the permissions listed in INLINE_CHECKS below;
2. the roles that may: every role in sessions/roles.py whose permissions hold *all* of them;
3. the team pages check a role, not a permission (support admins only): ROLE_CHECKS.

The log line stays Django's one (django.request, rewritten by OneLineForbiddenFilter); nothing here logs.
500.html is a static template (Django's own handler500: no context, no database).
"""

from __future__ import annotations

import functools
from pathlib import Path

from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, HttpResponseNotFound
from django.template import loader
from django.template.exceptions import TemplateDoesNotExist

from . import roles
from .accounts.denials import _permission_checks

# Views that check a permission in their body (no decorator to read): URL name -> permissions.
INLINE_CHECKS: dict[str, list[str]] = {
    "audit-export-detail": ["charging_sessions.export_auditrecord"],
    "audit-export-download": ["charging_sessions.export_auditrecord"],
}
# Views that check a role, not a permission: URL name prefix -> roles.
ROLE_CHECKS: dict[str, list[str]] = {
    "team": [roles.ADMIN],  # sessions/accounts/views.py: team_admin_required (support admins, superusers)
}
# What was refused, in words, by URL name.
WHAT: dict[str, str] = {
    "session-list": "see the charging sessions",
    "session-detail": "open this charging session",
    "request-stop": "stop a charging session",
    "stop-status": "follow this stop request",
    "stuck-sessions": "open the stuck sessions queue",
    "resend-stop": "send a stop again",
    "close-session": "close a session by hand",
    "stop-history": "open the stop history",
    "stop-timeline": "open this stop request",
    "audit-export": "export the audit log",
    "audit-export-start": "export the audit log",
    "audit-export-detail": "open this audit export",
    "audit-export-download": "download this audit export",
    "audit-chain-status": "see the audit trail's verification",
    "audit-verify": "verify the audit trail",
    "anomalies": "see the message anomalies",
    "anomaly-message": "open this flagged message",
    "team": "manage the team",
}


def required_permissions(request: HttpRequest) -> list[str]:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return []
    return INLINE_CHECKS.get(match.url_name or "") or _permission_checks(match.func)


def roles_allowed(request: HttpRequest) -> list[str]:
    """The roles that may do what was refused (empty when the portal cannot tell)."""
    match = getattr(request, "resolver_match", None)
    name = (match.url_name or "") if match is not None else ""
    for prefix, allowed in ROLE_CHECKS.items():
        if name == prefix or name.startswith(prefix + "-"):
            return list(allowed)
    required = [perm.split(".", 1)[-1] for perm in required_permissions(request)]
    if not required:
        return []
    return [role for role, perms in roles.ROLE_PERMISSIONS.items() if set(required) <= set(perms)]


def _what(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    name = (match.url_name or "") if match is not None else ""
    if name.startswith("team-member"):
        name = "team"
    return WHAT.get(name, "open this page")


def _join(names: list[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " or " + names[-1]


def permission_denied(
    request: HttpRequest, exception: BaseException | None = None, template_name: str = "403.html"
) -> HttpResponse:
    allowed = roles_allowed(request)
    user = getattr(request, "user", None)
    has_role = bool(user is not None and user.is_authenticated and user.groups.exists())
    context = {
        "what": _what(request),
        "allowed_roles": allowed,
        "allowed_words": _join(allowed),
        "has_role": has_role,
        "request_path": request.path,
    }
    try:
        template = loader.get_template(template_name)
    except TemplateDoesNotExist:
        return HttpResponseForbidden(b"<h1>403 Forbidden</h1>", content_type="text/html")
    return HttpResponseForbidden(template.render(context, request))


def page_not_found(
    request: HttpRequest, exception: BaseException | None = None, template_name: str = "404.html"
) -> HttpResponse:
    # The reason from Http404("No such stop request"), not Django's resolver dump.
    reason = ""
    if exception is not None and exception.args and isinstance(exception.args[0], str):
        reason = exception.args[0].strip().rstrip(".")
    try:
        template = loader.get_template(template_name)
    except TemplateDoesNotExist:
        return HttpResponseNotFound(b"<h1>Not found</h1>", content_type="text/html")
    return HttpResponseNotFound(template.render({"reason": reason, "request_path": request.path}, request))


@functools.cache
def _favicon_svg() -> bytes:
    path = finders.find("portal/favicon.svg")
    return Path(path).read_bytes() if path else b""


def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, which browsers ask for whatever the page links: the portal's SVG icon itself
    (static/portal/favicon.svg), so no 404 lands in the log; no login, no database."""
    response = HttpResponse(_favicon_svg(), content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=86400"
    return response
