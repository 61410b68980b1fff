from django.urls import include, path

from . import views, views_history
from .inbound import views as views_anomalies

app_name = "charging_sessions"

urlpatterns = [
    path("", views.session_list, name="session-list"),
    path("sessions/<int:pk>/", views.session_detail, name="session-detail"),
    path("sessions/<int:pk>/stop/", views.request_stop, name="request-stop"),
    path("stops/<int:pk>/status/", views.stop_status, name="stop-status"),
    path("stuck/", views.stuck_sessions, name="stuck-sessions"),
    path("stops/<int:pk>/resend/", views.resend_stop, name="resend-stop"),
    path("sessions/<int:pk>/close/", views.close_session, name="close-session"),
    path("stops/", views_history.stop_history, name="stop-history"),
    path("stops/<int:pk>/", views_history.stop_timeline, name="stop-timeline"),
    path("audit/export/", views_history.audit_export, name="audit-export"),
    path("audit/export/start/", views_history.start_audit_export, name="audit-export-start"),
    path("audit/exports/<int:pk>/", views_history.audit_export_detail, name="audit-export-detail"),
    path("audit/exports/<int:pk>/download/", views_history.audit_export_download, name="audit-export-download"),
    path("audit/verification/", views_history.audit_chain_status, name="audit-chain-status"),
    path("audit/verify/", views_history.verify_audit_chain_now, name="audit-verify"),
    path("anomalies/", views_anomalies.message_anomalies, name="anomalies"),
    path("anomalies/<int:pk>/", views_anomalies.anomaly_message, name="anomaly-message"),
    # Your password and second factor; the team pages of support admins (sessions/accounts/urls.py).
    path("", include("sessions.accounts.urls")),
]
