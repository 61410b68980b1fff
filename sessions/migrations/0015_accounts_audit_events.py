"""The audit event types of the portal's own accounts (sessions/accounts): choices only, no SQL."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("charging_sessions", "0014_inbound_refusal_counts")]

    operations = [
        migrations.AlterField(
            model_name="auditrecord",
            name="event_type",
            field=models.CharField(
                choices=[
                    ("STOP_REQUESTED", "Stop requested"),
                    ("STOP_REFUSED", "Stop refused by the portal"),
                    ("STOP_SENDING", "Stop sent to Hubject"),
                    ("STOP_ACCEPTED", "Stop accepted"),
                    ("STOP_REJECTED", "Stop rejected"),
                    ("STOP_ATTEMPT_FAILED", "Attempt failed, retry scheduled"),
                    ("STOP_FAILED", "Stop failed"),
                    ("STOP_CONFIRMED", "Stop confirmed"),
                    ("STOP_UNCONFIRMED", "Stop not confirmed in time"),
                    ("SESSION_CREATED", "Session created"),
                    ("SESSION_UPDATED", "Session updated"),
                    ("SESSION_CLOSED_MANUALLY", "Session closed by hand (not a remote stop)"),
                    ("NOTIFICATION_RECEIVED", "Charging notification received"),
                    ("CDR_RECEIVED", "Charge detail record received"),
                    ("INBOUND_REFUSED", "Inbound OICP call refused"),
                    ("RECONCILIATION_RUN", "CDR reconciliation run"),
                    ("SESSIONS_IMPORTED", "Sessions imported"),
                    ("AUDIT_EXPORTED", "Audit log exported"),
                    ("AUDIT_VERIFIED", "Audit chain verified"),
                    ("AUDIT_PURGED", "Audit records purged"),
                    ("LEGAL_HOLD_CHANGED", "Legal hold changed"),
                    ("USER_CREATED", "Team member created"),
                    ("USER_ROLE_CHANGED", "Team member's role changed"),
                    ("USER_DEACTIVATED", "Team member deactivated"),
                    ("USER_REACTIVATED", "Team member reactivated"),
                    ("USER_PASSWORD_RESET", "Password reset by an admin"),
                    ("PASSWORD_CHANGED", "Password changed"),
                    ("TWO_FACTOR_ENROLLED", "Two-factor authentication set up"),
                    ("TWO_FACTOR_CODES_RENEWED", "New two-factor recovery codes"),
                    ("TWO_FACTOR_RECOVERY_USED", "Recovery code used to log in"),
                    ("TWO_FACTOR_DISABLED", "Two-factor authentication turned off"),
                    ("TWO_FACTOR_RESET", "Two-factor authentication reset by an admin"),
                ],
                db_index=True,
                max_length=32,
            ),
        ),
    ]
