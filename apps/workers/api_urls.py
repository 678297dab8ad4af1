from django.urls import URLPattern, URLResolver

app_name = "workers_api"
urlpatterns: list[URLPattern | URLResolver] = []
