from django.urls import URLPattern, URLResolver

app_name = "workers_agent"
urlpatterns: list[URLPattern | URLResolver] = []
