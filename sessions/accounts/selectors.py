"""Reads about accounts: roles, who a support admin may manage, the state of a second factor."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from .. import roles
from ..models import AuditRecord

Event = AuditRecord.EventType

# A support admin manages the people holding these roles, and assigns only these.
MANAGED_ROLES = (roles.AGENT, roles.ADMIN)
# TWO_FACTOR_REQUIRED_ROLES may name superusers too (they have no group).
SUPERUSER = "Superuser"


def role_names(user) -> list[str]:
    """The user's roles (group names), as the top bar shows them."""
    if not getattr(user, "is_authenticated", False):
        return []
    cached = getattr(user, "_portal_role_names", None)
    if cached is None:
        prefetched = getattr(user, "_prefetched_objects_cache", {}).get("groups")
        if prefetched is not None:
            cached = sorted(group.name for group in prefetched)
        else:
            cached = sorted(user.groups.values_list("name", flat=True))
        user._portal_role_names = cached
    return cached


def can_manage_team(user) -> bool:
    """Support admins (and superusers) manage the portal's agents and support admins."""
    return bool(
        getattr(user, "is_authenticated", False)
        and user.is_active
        and (user.is_superuser or roles.ADMIN in role_names(user))
    )


def is_team_member(user) -> bool:
    """A user a support admin may manage: holds only managed roles, and is no superuser."""
    names = role_names(user) if user.pk else []
    return not user.is_superuser and bool(names) and set(names) <= set(MANAGED_ROLES)


def team_role(user) -> str:
    """The one managed role of a team member (a support admin is an agent too)."""
    names = role_names(user)
    return roles.ADMIN if roles.ADMIN in names else (names[0] if names else "")


def team_members() -> QuerySet:
    """Agents and support admins, active first, with their roles and whether their second factor is on."""
    User = get_user_model()
    others = Group.objects.filter(user=OuterRef("pk")).exclude(name__in=MANAGED_ROLES)
    return (
        User.objects.filter(is_superuser=False, groups__name__in=MANAGED_ROLES)
        .exclude(Exists(others))
        .annotate(two_factor_on=Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)))
        .prefetch_related(Prefetch("groups", queryset=Group.objects.order_by("name")))
        .distinct()
        .order_by("-is_active", "username")
    )


def team_member(pk: int):
    """One team member, or None when there is no such user or it is not one a support admin manages."""
    return team_members().filter(pk=pk).first()


# --- the second factor -------------------------------------------------------------------------------


def two_factor_required(user) -> bool:
    """Whether one of the user's roles must log in with a second factor (TWO_FACTOR_REQUIRED_ROLES)."""
    required = set(settings.TWO_FACTOR_REQUIRED_ROLES)
    if not required or not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser and SUPERUSER in required:
        return True
    return bool(required & set(role_names(user)))


def totp_device(user, *, confirmed: bool = True) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=confirmed).order_by("-id").first()


def has_two_factor(user) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def recovery_codes_left(user) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


@dataclass(frozen=True)
class TwoFactorStatus:
    enrolled: bool
    required: bool
    codes_left: int
    device: TOTPDevice | None


def two_factor_status(user) -> TwoFactorStatus:
    device = totp_device(user)
    return TwoFactorStatus(
        enrolled=device is not None,
        required=two_factor_required(user),
        codes_left=recovery_codes_left(user) if device is not None else 0,
        device=device,
    )


def recovery_device(user) -> StaticDevice | None:
    return StaticDevice.objects.filter(user=user, confirmed=True).order_by("-id").first()


# --- passwords -----------------------------------------------------------------------------------


def password_change_required(user: AbstractBaseUser) -> bool:
    """Whether the user's password is a temporary one an admin set (created or reset).

    The audit trail is the record of who set it last: an admin's USER_CREATED or
    USER_PASSWORD_RESET newer than the user's own PASSWORD_CHANGED. Read once per login.
    """
    newest = (
        AuditRecord.objects.filter(
            event_type__in=[Event.USER_CREATED, Event.USER_PASSWORD_RESET, Event.PASSWORD_CHANGED],
            data__user_id=user.pk,
        )
        .order_by("-id")
        .values_list("event_type", flat=True)
        .first()
    )
    return newest in (Event.USER_CREATED, Event.USER_PASSWORD_RESET)
