from django.urls import URLPattern, URLResolver

app_name = "workers"
urlpatterns: list[URLPattern | URLResolver] = []
