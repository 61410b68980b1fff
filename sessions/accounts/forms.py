"""Forms of the account pages. Validation only; the views call one service each."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import PasswordChangeForm as DjangoPasswordChangeForm

from .selectors import MANAGED_ROLES

ROLE_CHOICES = [(role, role) for role in MANAGED_ROLES]


class PasswordChangeForm(DjangoPasswordChangeForm):
    """Django's form (the current password, the new one twice, the validators); saved by a service."""

    def save(self, commit: bool = True):  # pragma: no cover - the view calls services.change_own_password
        raise NotImplementedError("use sessions.accounts.services.change_own_password")


class SecondFactorForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=32,
        strip=True,
        help_text="The 6-digit code your authenticator app shows now, or one of your recovery codes.",
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "autocapitalize": "off", "spellcheck": "false", "autofocus": True}
        ),
    )


class SetupCodeForm(forms.Form):
    code = forms.CharField(
        label="Code from the app",
        max_length=10,
        strip=True,
        help_text="The 6 digits the app shows for the EMP support portal.",
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "pattern": r"[0-9 ]{6,8}"}
        ),
    )


class TeamMemberForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="How they log in: letters, digits and @ . + - _ only.")
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=MANAGED_ROLES[0])

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        field = get_user_model()._meta.get_field("username")
        for validator in field.validators:
            validator(username)
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise forms.ValidationError("This username is taken.")
        return username


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES)
