"""The portal's ModelAdmin base classes: local times with their UTC offset on every list and record
page, read-only by default, and list filters that answer a bad value with an empty list, never 500.

`give_every_admin_local_times` gives the other apps' admin pages (users, django-axes, django-otp)
the same times; the app calls it once it is ready.
"""

import datetime

from django.contrib import admin, messages
from django.db import models
from django.http import HttpResponseRedirect
from django.template.defaultfilters import pluralize
from django.utils import timezone
from django.utils.html import format_html

# --- times: local, with the UTC offset, on every list and record page -----------------------------


def local_time(value):
    """`2026-12-06 21:02:13 +01:00` in a <time> element (machine-readable ISO 8601); None stays None."""
    if value is None:
        return None
    local = timezone.localtime(value)
    stamp = local.isoformat(timespec="seconds")
    text = f"{local:%Y-%m-%d %H:%M:%S} {stamp[-6:]}"
    return format_html('<time datetime="{}" class="admin-time">{}</time>', stamp, text)


def _local_time_display(field: models.DateTimeField, empty: str):
    @admin.display(description=field.verbose_name, ordering=field.name)
    def display(obj):
        value = getattr(obj, field.name)
        return empty if value is None else local_time(value)

    return display


class LocalTimesMixin:
    """Shows each DateTimeField of the model as `local_time` on the list and, where it is read-only,
    on the record page; sortable by its field, labelled with its verbose name.

    Django's own display is the locale's ("Dec. 6, 2026, 8:02 p.m.", no offset). Each datetime
    field `x` gets a display `x_local` on the ModelAdmin, used in its place.
    """

    def __init__(self, model, admin_site):
        super().__init__(model, admin_site)
        self.datetime_fields = {
            field.name: field for field in model._meta.concrete_fields if isinstance(field, models.DateTimeField)
        }
        for name, field in self.datetime_fields.items():
            setattr(self, f"{name}_local", _local_time_display(field, self.get_empty_value_display()))

    def _local(self, name):
        return f"{name}_local" if isinstance(name, str) and name in self.datetime_fields else name

    def get_list_display(self, request):
        return [self._local(name) for name in super().get_list_display(request)]

    def get_list_display_links(self, request, list_display):
        links = super().get_list_display_links(request, list_display)
        return links if links is None else [self._local(name) for name in links]

    def get_readonly_fields(self, request, obj=None):
        names = list(super().get_readonly_fields(request, obj))
        return names + [self._local(name) for name in names if name in self.datetime_fields]

    def get_fieldsets(self, request, obj=None):
        """Read-only datetimes (all of them on a view-only page) as their local display."""
        view_only = obj is not None and not self.has_change_permission(request, obj)
        readonly = set(super().get_readonly_fields(request, obj))

        def shown(name):
            return self._local(name) if view_only or name in readonly else name

        fieldsets, seen = [], set()
        for title, options in super().get_fieldsets(request, obj):
            fields = []
            for line in options.get("fields", ()):
                line = tuple(shown(name) for name in line) if isinstance(line, (list, tuple)) else shown(line)
                names = set(line) if isinstance(line, tuple) else {line}
                if not names & seen:  # `x` and `x_local` both listed: show it once
                    fields.append(line)
                    seen |= names
            fieldsets.append((title, {**options, "fields": fields}))
        return fieldsets


class PortalModelAdmin(LocalTimesMixin, admin.ModelAdmin):
    """The base of the portal's ModelAdmins."""

    def changelist_view(self, request, extra_context=None):
        # Filters come from the URL, so anything can arrive. Django turns what it cannot build into
        # "invalid lookup", but not what only the database refuses: a NUL (PostgreSQL text cannot
        # hold one) or a date drill-down past the calendar. Drop those filters, say so, show the rest.
        unusable = [key for key, values in request.GET.lists() if not _usable_filter(key, values)]
        unusable += [] if unusable else _impossible_day(request.GET)
        if unusable:
            query = request.GET.copy()
            for key in unusable:
                del query[key]
            messages.warning(
                request,
                f"Filter{pluralize(len(unusable))} not applied (not a usable value): {', '.join(sorted(unusable))}.",
            )
            return HttpResponseRedirect(f"{request.path}?{query.urlencode()}" if query else request.path)
        return super().changelist_view(request, extra_context)


_DATE_PARTS = {"__year": (1, 9999), "__month": (1, 12), "__day": (1, 31)}


def _impossible_day(query) -> list[str]:
    """The day of a date drill-down that the calendar does not have (February 31)."""
    for key in query:
        if key.endswith("__day"):
            field = key.removesuffix("__day")
            try:
                datetime.date(
                    int(query.get(f"{field}__year", 2000)), int(query.get(f"{field}__month", 1)), int(query[key])
                )
            except ValueError:
                return [key]
    return []


def _usable_filter(key: str, values: list[str]) -> bool:
    if any("\x00" in value for value in values):
        return False
    for suffix, (low, high) in _DATE_PARTS.items():
        if key.endswith(suffix):
            return all(value.isdigit() and low <= int(value) <= high for value in values)
    return True


class ReadOnlyAdmin(PortalModelAdmin):
    """No add, change or delete for anyone, superusers included: these are records."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- the same local times on the other apps' admin pages (users, django-axes, django-otp) ---------


def give_every_admin_local_times(site: admin.AdminSite = admin.site) -> None:
    """Re-register each ModelAdmin that lacks LocalTimesMixin with it mixed in (same class otherwise)."""
    for model, model_admin in list(site._registry.items()):
        if not isinstance(model_admin, LocalTimesMixin):
            site.unregister(model)
            site.register(model, type(type(model_admin).__name__, (LocalTimesMixin, type(model_admin)), {}))


# Called from ChargingSessionsConfig.ready(): django.contrib.admin's own ready() (listed first in
# INSTALLED_APPS) has imported every app's admin module by then, the apps after this one included.
