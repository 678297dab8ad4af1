"""Agent API routes of this app, mounted under /api/v1/ (worker tokens only)."""

from django.urls import path

from apps.workers.agent import WhoAmIView

app_name = "workers_agent"
urlpatterns = [
    path("whoami", WhoAmIView.as_view(), name="whoami"),
]
