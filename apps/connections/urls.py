from django.urls import path

from apps.connections import views

app_name = "connections"
urlpatterns = [
    path("", views.ConnectionListView.as_view(), name="list"),
    path("connect/", views.ProviderPickView.as_view(), name="pick"),
    path("connect/<str:provider_key>/", views.ConnectView.as_view(), name="connect"),
    path("apps/<str:provider_key>/", views.ProviderAppView.as_view(), name="provider-app"),
    path("<int:pk>/reconnect/", views.ReconnectView.as_view(), name="reconnect"),
    path("<int:pk>/disconnect/", views.DisconnectView.as_view(), name="disconnect"),
]
