"""Personal API token pages (mounted at /accounts/tokens/)."""

from django.urls import URLPattern, URLResolver

app_name = "personal_tokens"
urlpatterns: list[URLPattern | URLResolver] = []
