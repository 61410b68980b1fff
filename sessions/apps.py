from django.apps import AppConfig


class ChargingSessionsConfig(AppConfig):
    # The package is "sessions" but the label must not clash with django.contrib.sessions.
    name = "sessions"
    label = "charging_sessions"
    verbose_name = "Charging sessions"
