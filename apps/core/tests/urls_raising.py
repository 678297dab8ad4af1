"""The project's URLs plus one view that fails: for the error-page tests only."""

from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def fails(request: HttpRequest) -> HttpResponse:  # noqa: ARG001 - a view's signature
    raise RuntimeError("a bug in a view")


urlpatterns = [path("fails/", fails), path("", include("grantry.urls"))]
