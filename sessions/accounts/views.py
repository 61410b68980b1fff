"""The account pages: your password, your second factor, and (support admins) the team.

Thin: who may, the form, one service call, a message. Pages that show a secret (the authenticator
key, recovery codes, a temporary password) are answered once, never cached, and not redirected to.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice

from . import selectors, services
from .forms import PasswordChangeForm, RoleForm, SecondFactorForm, SetupCodeForm, TeamMemberForm
from .middleware import pending_step, safe_next
from .signals import PASSWORD_CHANGE_REQUIRED, TWO_FACTOR_ENROLLED


def _home() -> str:
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def _secret_page(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    response = render(request, template, context)
    response["Cache-Control"] = "no-store"
    return response


# --- your password ---------------------------------------------------------------------------------


@sensitive_post_parameters("old_password", "new_password1", "new_password2")
@require_http_methods(["GET", "POST"])
@login_required
def password_change(request: HttpRequest) -> HttpResponse:
    forced = pending_step(request) == "password"
    form = PasswordChangeForm(user=request.user, data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        services.change_own_password(user=request.user, new_password=form.cleaned_data["new_password1"])
        update_session_auth_hash(request, request.user)  # this login stays; all others end
        request.session[PASSWORD_CHANGE_REQUIRED] = False
        messages.success(request, "Your password was changed. Your other logins were ended.")
        return redirect(safe_next(request, _home()))
    return render(
        request, "accounts/password_change.html", {"form": form, "forced": forced, "next": safe_next(request)}
    )


# --- your second factor ----------------------------------------------------------------------------


@require_GET
@login_required
def two_factor(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/two_factor.html", {"status": selectors.two_factor_status(request.user)})


def _qr_svg(text: str) -> SafeString:
    """The QR code as inline <svg> markup: one <path> with presentation attributes (fill, stroke),
    no style attribute and no data: URL, so the strict Content-Security-Policy holds (no img-src
    data:). The markup is qrcode's own, built from the otpauth:// URL (no user input)."""
    import qrcode
    import qrcode.image.svg

    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    image.save(io.BytesIO())  # builds the <path>
    return mark_safe(image.to_string(encoding="unicode"))


def _grouped(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def two_factor_setup(request: HttpRequest) -> HttpResponse:
    """Scan the QR code (or type the key), give the code the app shows; then the recovery codes, once."""
    user = request.user
    next_url = safe_next(request)
    if selectors.has_two_factor(user):
        messages.info(request, "Two-factor authentication is already on for your account.")
        return redirect(next_url or reverse("charging_sessions:two-factor"))
    device = services.start_two_factor_setup(user=user)
    form = SetupCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            codes = services.confirm_two_factor_setup(user=user, device=device, token=form.cleaned_data["code"])
        except services.AccountChangeRefused as refused:
            messages.error(request, str(refused))
            return redirect(reverse("charging_sessions:two-factor-setup"))
        if codes is not None:
            otp_login(request, device)
            request.session[TWO_FACTOR_ENROLLED] = True
            return _secret_page(
                request,
                "accounts/recovery_codes.html",
                {"codes": codes, "next": next_url or _home(), "first_time": True},
            )
        form.add_error(
            "code",
            "That code is not right. Check that your phone's clock is set automatically, "
            "then type the code the app shows now.",
        )
    secret = base64.b32encode(device.bin_key).decode("ascii").rstrip("=")
    return _secret_page(
        request,
        "accounts/two_factor_setup.html",
        {
            "form": form,
            "next": next_url,
            "required": selectors.two_factor_required(user),
            "qr": _qr_svg(device.config_url),
            "secret": _grouped(secret),
            "secret_plain": secret,
            "issuer": settings.OTP_TOTP_ISSUER,
        },
    )


@never_cache
@sensitive_post_parameters("code")
@require_http_methods(["GET", "POST"])
@login_required
def two_factor_verify(request: HttpRequest) -> HttpResponse:
    """The second step of a login: a code from the authenticator, or a recovery code."""
    user = request.user
    next_url = safe_next(request, _home())
    if user.is_verified():
        return redirect(next_url)
    if not selectors.has_two_factor(user):  # a support admin reset it meanwhile, or it was turned off
        request.session[TWO_FACTOR_ENROLLED] = False
        return redirect(
            reverse("charging_sessions:two-factor-setup") if selectors.two_factor_required(user) else next_url
        )
    form = SecondFactorForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        check = services.check_second_factor(user=user, token=form.cleaned_data["code"])
        if check.device is not None:
            otp_login(request, check.device)
            if isinstance(check.device, StaticDevice):
                left = selectors.recovery_codes_left(user)
                messages.warning(
                    request,
                    f"You logged in with a recovery code; {left} left. If your phone is lost, "
                    "set up a new one: ask a support admin to reset your second factor.",
                )
            return redirect(next_url)
        if check.wait_seconds:
            form.add_error("code", f"Too many wrong codes: wait {check.wait_seconds} seconds, then try again.")
        else:
            form.add_error(
                "code",
                "That code is not right (or was used already). Type the code the app shows now, or a recovery code.",
            )
    return render(request, "accounts/two_factor_verify.html", {"form": form, "next": safe_next(request)})


@never_cache
@require_POST
@login_required
def two_factor_recovery_codes(request: HttpRequest) -> HttpResponse:
    try:
        codes = services.renew_recovery_codes(user=request.user)
    except services.AccountChangeRefused as refused:
        messages.error(request, str(refused))
        return redirect("charging_sessions:two-factor")
    return _secret_page(
        request,
        "accounts/recovery_codes.html",
        {"codes": codes, "next": reverse("charging_sessions:two-factor"), "first_time": False},
    )


@require_POST
@login_required
def two_factor_turn_off(request: HttpRequest) -> HttpResponse:
    try:
        services.turn_off_two_factor(user=request.user)
    except services.AccountChangeRefused as refused:
        messages.error(request, str(refused))
    else:
        request.session[TWO_FACTOR_ENROLLED] = False
        messages.success(request, "Two-factor authentication is off: you log in with your password only.")
    return redirect("charging_sessions:two-factor")


# --- the team (support admins) ---------------------------------------------------------------------


def team_admin_required(view: Callable) -> Callable:
    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not selectors.can_manage_team(request.user):
            raise PermissionDenied("support admins only (team management)")
        return view(request, *args, **kwargs)

    return wrapper


def _member(pk: int):
    member = selectors.team_member(pk)
    if member is None:
        raise Http404("Not an agent or a support admin")
    return member


@require_GET
@team_admin_required
def team(request: HttpRequest) -> HttpResponse:
    members = list(selectors.team_members())
    for member in members:
        member.role_label = selectors.team_role(member)
    return render(
        request,
        "accounts/team.html",
        {
            "members": members,
            "active_count": sum(1 for member in members if member.is_active),
            "required_roles": settings.TWO_FACTOR_REQUIRED_ROLES,
        },
    )


@require_http_methods(["GET", "POST"])
@team_admin_required
def team_member_new(request: HttpRequest) -> HttpResponse:
    form = TeamMemberForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            created = services.create_team_member(acting_user=request.user, **form.cleaned_data)
        except services.AccountChangeRefused as refused:
            form.add_error(None, str(refused))
        else:
            return _secret_page(
                request,
                "accounts/temporary_password.html",
                {"member": created.user, "password": created.password, "created": True},
            )
    return render(request, "accounts/team_member_new.html", {"form": form})


@require_GET
@team_admin_required
def team_member(request: HttpRequest, pk: int) -> HttpResponse:
    member = _member(pk)
    return render(
        request,
        "accounts/team_member.html",
        {
            "member": member,
            "role": selectors.team_role(member),
            "status": selectors.two_factor_status(member),
            "role_form": RoleForm(initial={"role": selectors.team_role(member)}),
            "is_self": member.pk == request.user.pk,
        },
    )


def _refused_or(request: HttpRequest, pk: int, change: Callable[[], bool], done: str, unchanged: str) -> HttpResponse:
    try:
        changed = change()
    except services.AccountChangeRefused as refused:
        messages.error(request, str(refused))
    else:
        (messages.success if changed else messages.info)(request, done if changed else unchanged)
    return redirect("charging_sessions:team-member", pk=pk)


@require_POST
@team_admin_required
def team_member_role(request: HttpRequest, pk: int) -> HttpResponse:
    member = _member(pk)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role: " + ", ".join(selectors.MANAGED_ROLES) + ".")
        return redirect("charging_sessions:team-member", pk=pk)
    role = form.cleaned_data["role"]
    return _refused_or(
        request,
        pk,
        lambda: services.change_team_member_role(acting_user=request.user, member=member, role=role),
        f"{member.get_username()} is now a {role}.",
        f"{member.get_username()} is already a {role}.",
    )


def _member_change(change: Callable[..., bool], done: str, unchanged: str):
    """The POST view of one account change to a team member; `{name}` in the texts is the username."""

    @require_POST
    @team_admin_required
    def view(request: HttpRequest, pk: int) -> HttpResponse:
        member = _member(pk)
        name = member.get_username()
        return _refused_or(
            request,
            pk,
            lambda: change(acting_user=request.user, member=member),
            done.format(name=name),
            unchanged.format(name=name),
        )

    return view


team_member_deactivate = _member_change(
    services.deactivate_team_member,
    "{name} is deactivated: they cannot log in, and their open logins ended.",
    "{name} was already deactivated.",
)
team_member_reactivate = _member_change(
    services.reactivate_team_member, "{name} can log in again.", "{name} was already active."
)
team_member_two_factor_reset = _member_change(
    services.reset_two_factor,
    "The second factor of {name} is reset: they set it up again at their "
    "next login (their role requires it) or when they choose to.",
    "{name} had no second factor to reset.",
)


@never_cache
@require_POST
@team_admin_required
def team_member_password_reset(request: HttpRequest, pk: int) -> HttpResponse:
    member = _member(pk)
    try:
        reset = services.reset_team_member_password(acting_user=request.user, member=member)
    except services.AccountChangeRefused as refused:
        messages.error(request, str(refused))
        return redirect("charging_sessions:team-member", pk=pk)
    return _secret_page(
        request, "accounts/temporary_password.html", {"member": member, "password": reset.password, "created": False}
    )
