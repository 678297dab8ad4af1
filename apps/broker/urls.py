"""The agent API under /api/v1/ (worker token). /mcp is routed in grantry/urls.py."""

from django.urls import URLPattern, URLResolver, path

from apps.broker import views

app_name = "broker"
urlpatterns: list[URLPattern | URLResolver] = [
    path("actions", views.action_list, name="actions"),
    path("actions/<str:action>/execute", views.execute, name="execute"),
    path("actions/<str:action>/check", views.check, name="check"),
    path("proxy/<str:connection>/", views.proxy, name="proxy-root"),
    path("proxy/<str:connection>/<path:path>", views.proxy, name="proxy"),
]
