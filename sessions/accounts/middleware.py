"""Keep a login that still owes something away from every page until it is settled.

After the password, in this order:
1. the second factor: a user with an authenticator gives a code (or a recovery code) on the verify
   page; a user whose role requires one (TWO_FACTOR_REQUIRED_ROLES) and has none sets it up first;
2. a new password, when the current one is a temporary password an admin set.

Until then every request (portal pages, fragments, the Django admin) is sent to the page that
settles it; only that page and logging out are open. After django_otp's OTPMiddleware.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.http import url_has_allowed_host_and_scheme

from . import selectors
from .signals import PASSWORD_CHANGE_REQUIRED, TWO_FACTOR_ENROLLED


def _noted(request: HttpRequest, key: str, read) -> bool:
    """What signals.py noted at login (read now for a login from before it noted anything)."""
    value = request.session.get(key)
    if value is None:
        value = request.session[key] = read(request.user)
    return value


def pending_step(request: HttpRequest) -> str | None:
    """What the logged-in user still owes: "verify", "setup", "password" or nothing.

    No query for a login that owes nothing, except the role check when TWO_FACTOR_REQUIRED_ROLES is
    set (a role may change during a login). A login from before its user set up a second factor
    elsewhere is not asked for it; one whose authenticator was removed is sent on by the verify page.
    """
    user = request.user
    if not user.is_authenticated:
        return None
    if not user.is_verified():
        if _noted(request, TWO_FACTOR_ENROLLED, selectors.has_two_factor):
            return "verify"
        if selectors.two_factor_required(user):
            return "setup"
    return "password" if _noted(request, PASSWORD_CHANGE_REQUIRED, selectors.password_change_required) else None


def safe_next(request: HttpRequest, default: str = "") -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return default


class AccountGateMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    @cached_property
    def _pages(self) -> dict[str, str]:
        return {
            "verify": reverse("charging_sessions:two-factor-verify"),
            "setup": reverse("charging_sessions:two-factor-setup"),
            "password": reverse("charging_sessions:password-change"),
        }

    @cached_property
    def _always_open(self) -> tuple[str, ...]:
        return (
            reverse("logout"),
            reverse("admin:logout"),
            reverse("healthz"),
            settings.STATIC_URL if settings.STATIC_URL.startswith("/") else "/" + settings.STATIC_URL,
        )

    def __call__(self, request: HttpRequest) -> HttpResponse:
        step = pending_step(request) if getattr(request, "user", None) is not None else None
        if step is not None:
            page = self._pages[step]
            path = request.path_info
            if path != page and not path.startswith(self._always_open):
                return self._send_to(request, page)
        return self.get_response(request)

    @staticmethod
    def _send_to(request: HttpRequest, page: str) -> HttpResponse:
        if request.method in ("GET", "HEAD") and request.headers.get("HX-Request") != "true":
            page += "?" + urlencode({"next": request.get_full_path()})
        if request.headers.get("HX-Request") == "true":
            # A fragment request: have htmx load the whole page instead of swapping it into a box.
            response = HttpResponse(status=204)
            response["HX-Redirect"] = page
            return response
        return HttpResponseRedirect(page)
