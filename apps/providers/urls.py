from django.urls import path

from apps.providers.views import catalog as views
from apps.providers.views import openapi as import_views

app_name = "providers"
urlpatterns = [
    path("", views.CatalogView.as_view(), name="catalog"),
    path("custom/new/", views.CustomProviderCreateView.as_view(), name="custom_create"),
    path("custom/<slug:slug>/edit/", views.CustomProviderUpdateView.as_view(), name="custom_edit"),
    path(
        "custom/<slug:slug>/delete/",
        views.CustomProviderDeleteView.as_view(),
        name="custom_delete",
    ),
    path(
        "custom/<slug:slug>/actions/new/",
        views.CustomActionCreateView.as_view(),
        name="custom_action_create",
    ),
    path(
        "custom/<slug:slug>/import/",
        import_views.OpenAPIImportView.as_view(),
        name="custom_openapi_import",
    ),
    path(
        "custom/<slug:slug>/import/<int:pk>/",
        import_views.OpenAPIImportJobView.as_view(),
        name="custom_openapi_import_job",
    ),
    path(
        "custom/<slug:slug>/actions/<slug:name>/delete/",
        views.CustomActionDeleteView.as_view(),
        name="custom_action_delete",
    ),
    path("<slug:key>/", views.ProviderDetailView.as_view(), name="detail"),
]
