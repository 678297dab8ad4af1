"""The site's URLs plus one view that fails, so a browser test can see the 500 page
as a user would (Django renders handler500 only for an exception nobody answered)."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from grantry.urls import handler404, handler500
from grantry.urls import urlpatterns as site_urlpatterns

__all__ = ["handler404", "handler500", "urlpatterns"]


def boom(_request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a failure no view answered (test)")


urlpatterns = [path("boom/", boom), *site_urlpatterns]
