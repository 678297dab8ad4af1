from django.urls import path

from bench_site.anchor import MinimalBroker
from grantry.urls import urlpatterns as project_urls

urlpatterns = [path("bench/anchor/", MinimalBroker.as_view()), *project_urls]
