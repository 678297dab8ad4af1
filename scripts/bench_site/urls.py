from django.urls import path

from grantry.urls import urlpatterns as project_urls

from .anchor import MinimalBroker

urlpatterns = [path("bench/anchor/", MinimalBroker.as_view()), *project_urls]
