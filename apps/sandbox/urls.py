"""Mounted at /sandbox/ only when settings.GRANTRY_SANDBOX_ENABLED.

This module has no app_name on purpose: DOT reverses its own views as
"oauth2_provider:<name>" (RFC 8414 metadata, the RFC 9207 issuer), so its
namespace must sit at the top level. The Sandbox's own pages use "sandbox:"."""

from django.urls import URLPattern, URLResolver, include, path, re_path
from oauth2_provider import views as dot_views
from oauth2_provider.urls import metadata_urlpatterns

from apps.sandbox import api, views

oauth_patterns: list[URLPattern | URLResolver] = [
    *metadata_urlpatterns,
    path("authorize/", views.SandboxAuthorizationView.as_view(), name="authorize"),
    path("token/", dot_views.TokenView.as_view(), name="token"),
    path("revoke_token/", dot_views.RevokeTokenView.as_view(), name="revoke-token"),
]

sandbox_patterns: list[URLPattern | URLResolver] = [
    path("", views.home, name="home"),
    path("keys/", views.api_key_create, name="api-key-create"),
    path("keys/<int:key_id>/revoke/", views.api_key_revoke, name="api-key-revoke"),
    path("demo-data/", views.demo_data_load, name="demo-data"),
    path("api/v1/me", api.MeView.as_view(), name="api-me"),
    path("api/v1/projects", api.ProjectListView.as_view(), name="api-projects"),
    path("api/v1/projects/<int:project_id>/tasks", api.TaskListView.as_view(), name="api-tasks"),
    path("api/v1/tasks/<int:task_id>", api.TaskDetailView.as_view(), name="api-task"),
    re_path(r"^api/v1/(?P<rest>.*)$", api.NotFoundView.as_view(), name="api-not-found"),
]

urlpatterns: list[URLPattern | URLResolver] = [
    path("o/", include((oauth_patterns, "oauth2_provider"))),
    path("", include((sandbox_patterns, "sandbox"))),
]
