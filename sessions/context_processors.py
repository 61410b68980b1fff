from django.conf import settings


def portal(request):
    """The environment badge and the user's role, shown in the top bar of every page."""
    user = getattr(request, "user", None)
    role = ""
    if user is not None and user.is_authenticated:
        names = [group.name for group in user.groups.all()]
        role = ", ".join(names) or ("Superuser" if user.is_superuser else "")
    return {"portal_environment": settings.PORTAL_ENVIRONMENT, "portal_role": role}
