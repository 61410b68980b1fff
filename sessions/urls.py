from django.urls import path

from . import views

app_name = "charging_sessions"

urlpatterns = [
    path("", views.session_list, name="session-list"),
    path("sessions/<int:pk>/", views.session_detail, name="session-detail"),
    path("sessions/<int:pk>/stop/", views.request_stop, name="request-stop"),
    path("stops/<int:pk>/status/", views.stop_status, name="stop-status"),
    path("stuck/", views.stuck_sessions, name="stuck-sessions"),
    path("stops/<int:pk>/resend/", views.resend_stop, name="resend-stop"),
    path("sessions/<int:pk>/close/", views.close_session, name="close-session"),
]
