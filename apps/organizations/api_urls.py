from django.urls import URLPattern, URLResolver

app_name = "org_api"
urlpatterns: list[URLPattern | URLResolver] = []
