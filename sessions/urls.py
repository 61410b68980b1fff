from django.urls import include, path

from .audit import views as audit_views
from .charging import views as charging_views
from .directory import views as directory_views
from .inbound import views as views_anomalies
from .operators import views as operator_views
from .stops import views as stop_views

app_name = "charging_sessions"

urlpatterns = [
    path("", charging_views.session_list, name="session-list"),
    path("sessions/<int:pk>/", charging_views.session_detail, name="session-detail"),
    path("sessions/<int:pk>/stop/", stop_views.request_stop, name="request-stop"),
    path("sessions/<int:pk>/evse-status/", directory_views.evse_status, name="evse-status"),
    path("stations/<int:pk>/", directory_views.station_detail, name="station-detail"),
    path("stops/<int:pk>/status/", stop_views.stop_status, name="stop-status"),
    path("stuck/", charging_views.stuck_sessions, name="stuck-sessions"),
    path("stops/<int:pk>/resend/", stop_views.resend_stop, name="resend-stop"),
    path("sessions/<int:pk>/close/", charging_views.close_session, name="close-session"),
    path("stops/", stop_views.stop_history, name="stop-history"),
    path("stops/<int:pk>/", stop_views.stop_timeline, name="stop-timeline"),
    path("audit/export/", audit_views.audit_export, name="audit-export"),
    path("audit/export/start/", audit_views.start_audit_export, name="audit-export-start"),
    path("audit/exports/<int:pk>/", audit_views.audit_export_detail, name="audit-export-detail"),
    path("audit/exports/<int:pk>/download/", audit_views.audit_export_download, name="audit-export-download"),
    path("audit/verification/", audit_views.audit_chain_status, name="audit-chain-status"),
    path("audit/verify/", audit_views.verify_audit_chain_now, name="audit-verify"),
    path("anomalies/", views_anomalies.message_anomalies, name="anomalies"),
    path("anomalies/<int:pk>/", views_anomalies.anomaly_message, name="anomaly-message"),
    path("operators/", operator_views.operator_overview, name="operator-overview"),
    path("operators/overview.csv", operator_views.operator_overview_csv, name="operator-overview-csv"),
    path("operators/<str:operator_id>/", operator_views.operator_detail, name="operator-detail"),
    # Your password and second factor; the team pages of support admins (sessions/accounts/urls.py).
    path("", include("sessions.accounts.urls")),
]
