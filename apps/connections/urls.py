from django.urls import URLPattern, URLResolver

app_name = "connections"
urlpatterns: list[URLPattern | URLResolver] = []
