from django.urls import URLPattern, URLResolver

app_name = "broker"
urlpatterns: list[URLPattern | URLResolver] = []
