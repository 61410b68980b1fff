from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from sessions import error_views, health
from sessions.inbound import endpoints as inbound_views

admin.site.site_header = "EMP support portal: administration"
admin.site.site_title = "EMP support portal"

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # For load balancers: no login, reveals only ok/error for database, broker and worker.
    path("healthz", health.healthz, name="healthz"),
    # Browsers ask for /favicon.ico whatever the page links: answer with the SVG icon (no 404 in the log).
    path("favicon.ico", error_views.favicon, name="favicon"),
    # OICP 2.3 endpoints Hubject pushes to (machine endpoints: no login, no CSRF; see inbound_views).
    path(
        "api/oicp/notificationmgmt/v11/charging-notifications",
        inbound_views.charging_notifications,
        name="oicp-charging-notifications",
    ),
    path(
        "api/oicp/cdrmgmt/v22/operators/<str:operator_id>/charge-detail-record",
        inbound_views.charge_detail_record,
        name="oicp-charge-detail-record",
    ),
    path("", include("sessions.urls")),
]

# The portal's own error pages, with the top bar (sessions/error_views.py); 500 is templates/500.html
# rendered by Django's handler500 (static: no context, no database).
handler403 = error_views.permission_denied
handler404 = error_views.page_not_found
