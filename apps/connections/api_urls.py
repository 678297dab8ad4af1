"""Management API routes of this app, mounted under /api/v1/orgs/<org_slug>/."""

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
