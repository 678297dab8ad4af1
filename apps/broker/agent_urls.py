"""The agent API under /api/v1/ (worker token). /mcp is routed in grantry/urls.py."""

from django.urls import URLPattern, URLResolver, path, re_path

from apps.broker import agent

app_name = "broker"
urlpatterns: list[URLPattern | URLResolver] = [
    path("actions", agent.action_list, name="actions"),
    path("actions/<str:action>/execute", agent.execute, name="execute"),
    path("actions/<str:action>/check", agent.check, name="check"),
    # Any character may reach the view (which refuses unsafe paths with the standard
    # error body) rather than fall through to an HTML 404.
    re_path(r"^proxy/(?P<connection>[^/]+)/(?P<path>[\s\S]+)$", agent.proxy, name="proxy"),
]
