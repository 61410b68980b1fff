"""Writes about accounts. Each change and its audit record are one transaction (record_audit last).

Support admins manage agents and support admins: create them, change their role, reset their
password (a temporary one, shown once, to be replaced at the next login) or their second factor,
deactivate and reactivate them; never themselves, never anyone with another role or a superuser.
Everyone changes their own password and sets up their own second factor.

Audit records name the account changed in `data` (`user_id`, `username`) and who changed it as
the actor. Passwords, secrets and recovery codes are never recorded.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.utils import timezone
from django_otp import verify_token
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from .. import roles
from ..audit.records import record_audit
from ..models import AuditRecord
from . import selectors

Event = AuditRecord.EventType

RECOVERY_CODE_COUNT = 10
# Temporary passwords: no 0/O, 1/l/I, read out on the phone in groups of four.
_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class AccountChangeRefused(Exception):
    """The change may not be made; the message says why, in words for the page."""


def _subject(user) -> dict:
    return {"user_id": user.pk, "username": user.get_username()}


def _temporary_password(user) -> str:
    while True:
        password = "-".join("".join(secrets.choice(_ALPHABET) for _ in range(4)) for _ in range(4))
        try:
            validate_password(password, user)
        except Exception:  # noqa: BLE001 - a rare unlucky draw: draw again
            continue
        return password


# --- support admins manage their team --------------------------------------------------------------


def _check_manager(acting_user) -> None:
    if not selectors.can_manage_team(acting_user):
        raise AccountChangeRefused("Only support admins manage the team.")


def _check_member(acting_user, member, *, self_allowed: bool = False) -> None:
    _check_manager(acting_user)
    if not selectors.is_team_member(member):
        raise AccountChangeRefused(
            f"{member.get_username()} is not an agent or a support admin: supervisors, auditors and "
            "superusers are managed in the Django admin."
        )
    if member.pk == acting_user.pk and not self_allowed:
        raise AccountChangeRefused(
            "You cannot do this to your own account (ask another support admin); "
            "change your own password under Change password."
        )


def _check_role(role: str) -> Group:
    if role not in selectors.MANAGED_ROLES:
        raise AccountChangeRefused(f"Choose one of: {', '.join(selectors.MANAGED_ROLES)}.")
    return Group.objects.get(name=role)


def _forget_roles(user) -> None:
    user.__dict__.pop("_portal_role_names", None)
    getattr(user, "_prefetched_objects_cache", {}).pop("groups", None)


@dataclass(frozen=True)
class TemporaryPassword:
    user: object
    password: str  # shown once on the page, never stored in clear or audited


def create_team_member(
    *, acting_user, username: str, role: str, first_name: str = "", last_name: str = "", email: str = ""
) -> TemporaryPassword:
    """A new agent or support admin with a temporary password they must replace at their first login."""
    _check_manager(acting_user)
    group = _check_role(role)
    User = get_user_model()
    with transaction.atomic():
        if User.objects.filter(username__iexact=username).exists():
            raise AccountChangeRefused(f"The username {username} is taken.")
        user = User(
            username=username,
            first_name=first_name,
            last_name=last_name,
            email=email,
            is_active=True,
            # Support admins review stops and audit records in the Django admin, as in the demo.
            is_staff=role == roles.ADMIN,
        )
        password = _temporary_password(user)
        user.set_password(password)
        user.save()
        user.groups.add(group)
        record_audit(
            event_type=Event.USER_CREATED,
            actor=acting_user,
            data={**_subject(user), "role": role, "temporary_password": True},
        )
    return TemporaryPassword(user=user, password=password)


def change_team_member_role(*, acting_user, member, role: str) -> bool:
    """Make an agent a support admin or back; False when the member already had that role."""
    _check_member(acting_user, member)
    group = _check_role(role)
    old_role = selectors.team_role(member)
    if old_role == role:
        return False
    with transaction.atomic():
        member.groups.remove(*Group.objects.filter(name__in=selectors.MANAGED_ROLES))
        member.groups.add(group)
        member.is_staff = role == roles.ADMIN
        member.save(update_fields=["is_staff"])
        _forget_roles(member)
        record_audit(
            event_type=Event.USER_ROLE_CHANGED,
            actor=acting_user,
            data={**_subject(member), "old_role": old_role, "new_role": role},
        )
    return True


def deactivate_team_member(*, acting_user, member) -> bool:
    """The member can no longer log in, and is logged out everywhere; nothing of theirs is deleted."""
    return _set_active(acting_user, member, active=False)


def reactivate_team_member(*, acting_user, member) -> bool:
    """The member can log in again, with the role and second factor they had."""
    return _set_active(acting_user, member, active=True)


def _set_active(acting_user, member, *, active: bool) -> bool:
    """False when the member already is so: nothing is written."""
    _check_member(acting_user, member)
    if member.is_active == active:
        return False
    with transaction.atomic():
        member.is_active = active
        member.save(update_fields=["is_active"])
        event = Event.USER_REACTIVATED if active else Event.USER_DEACTIVATED
        record_audit(event_type=event, actor=acting_user, data=_subject(member))
    return True


def reset_team_member_password(*, acting_user, member) -> TemporaryPassword:
    """A temporary password, shown once to the admin; the member must replace it at the next login.

    Changing the password ends the member's open logins (Django checks the password hash per request).
    """
    _check_member(acting_user, member)
    with transaction.atomic():
        password = _temporary_password(member)
        member.set_password(password)
        member.save(update_fields=["password"])
        record_audit(
            event_type=Event.USER_PASSWORD_RESET,
            actor=acting_user,
            data={**_subject(member), "temporary_password": True},
        )
    return TemporaryPassword(user=member, password=password)


def reset_two_factor(*, acting_user, member) -> bool:
    """Remove the member's authenticator and recovery codes (a lost phone): they set it up again at
    the next login when their role requires it. False when there was nothing to reset."""
    _check_member(acting_user, member)
    with transaction.atomic():
        devices = list(TOTPDevice.objects.filter(user=member)) + list(StaticDevice.objects.filter(user=member))
        if not devices:
            return False
        for device in devices:
            device.delete()
        record_audit(event_type=Event.TWO_FACTOR_RESET, actor=acting_user, data=_subject(member))
    return True


# --- everyone: their own password ------------------------------------------------------------------


def change_own_password(*, user, new_password: str) -> None:
    """Set the user's new password (validated by the form: the old one, Django's validators)."""
    was_temporary = selectors.password_change_required(user)
    with transaction.atomic():
        user.set_password(new_password)
        user.save(update_fields=["password"])
        record_audit(
            event_type=Event.PASSWORD_CHANGED, actor=user, data={**_subject(user), "was_temporary": was_temporary}
        )


# --- everyone: their own second factor -------------------------------------------------------------


def start_two_factor_setup(*, user) -> TOTPDevice:
    """The unconfirmed authenticator the setup page shows; the same one until it is confirmed.

    Nothing is in force yet (an unconfirmed device verifies nothing), so nothing is audited.
    """
    device = selectors.totp_device(user, confirmed=False)
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)
    return device


def _new_recovery_codes(user) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name="Recovery codes", confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


def confirm_two_factor_setup(*, user, device: TOTPDevice, token: str) -> list[str] | None:
    """Turn the authenticator on once it gives a right code: recovery codes (shown once), or None."""
    if device.user_id != user.pk or device.confirmed:
        raise AccountChangeRefused("This setup is no longer open: start again.")
    if selectors.has_two_factor(user):
        raise AccountChangeRefused("Two-factor authentication is already on for your account.")
    with transaction.atomic():
        if verify_token(user, device.persistent_id, _digits(token)) is None:
            return None
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        codes = _new_recovery_codes(user)
        record_audit(
            event_type=Event.TWO_FACTOR_ENROLLED, actor=user, data={**_subject(user), "recovery_codes": len(codes)}
        )
    return codes


def renew_recovery_codes(*, user) -> list[str]:
    """Ten new recovery codes; the old ones stop working."""
    if not selectors.has_two_factor(user):
        raise AccountChangeRefused("Set up two-factor authentication first.")
    with transaction.atomic():
        codes = _new_recovery_codes(user)
        record_audit(
            event_type=Event.TWO_FACTOR_CODES_RENEWED, actor=user, data={**_subject(user), "recovery_codes": len(codes)}
        )
    return codes


def turn_off_two_factor(*, user) -> None:
    """Only for a user whose role does not require it (TWO_FACTOR_REQUIRED_ROLES)."""
    if selectors.two_factor_required(user):
        raise AccountChangeRefused("Your role requires two-factor authentication: it cannot be turned off.")
    with transaction.atomic():
        deleted, _ = TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()
        if deleted:
            record_audit(event_type=Event.TWO_FACTOR_DISABLED, actor=user, data=_subject(user))


@dataclass(frozen=True)
class SecondFactorCheck:
    device: Device | None
    wait_seconds: int = 0  # too many wrong codes: the authenticator refuses codes for this long


def _digits(token: str) -> str:
    return "".join(token.split())


def check_second_factor(*, user, token: str) -> SecondFactorCheck:
    """A code from the authenticator (6 digits) or a recovery code (used up, audited)."""
    token = _digits(token)
    if token.isdigit() and len(token) < 8:  # authenticators show 6 digits; recovery codes have 8 characters
        device = selectors.totp_device(user)
        if device is None:
            return SecondFactorCheck(None)
        allowed, _ = device.verify_is_allowed()
        if not allowed:
            return SecondFactorCheck(None, _wait_seconds(device))
        return SecondFactorCheck(verify_token(user, device.persistent_id, token))
    device = selectors.recovery_device(user)
    if device is None or not selectors.has_two_factor(user):
        return SecondFactorCheck(None)
    allowed, _ = device.verify_is_allowed()
    if not allowed:
        return SecondFactorCheck(None, _wait_seconds(device))
    with transaction.atomic():
        verified = verify_token(user, device.persistent_id, token.replace("-", "").lower())
        if verified is not None:
            record_audit(
                event_type=Event.TWO_FACTOR_RECOVERY_USED,
                actor=user,
                data={**_subject(user), "codes_left": device.token_set.count()},
            )
    return SecondFactorCheck(verified)


def _wait_seconds(device) -> int:
    if not device.throttling_failure_timestamp:
        return 0
    required = device.get_throttle_factor() * 2 ** (device.throttling_failure_count - 1)
    waited = (timezone.now() - device.throttling_failure_timestamp).total_seconds()
    return max(1, int(required - waited + 0.999))
