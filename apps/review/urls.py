from django.urls import URLPattern, URLResolver, path

from apps.review import views

app_name = "audit"
urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.AuditListView.as_view(), name="list"),
    path("events/<int:pk>/", views.AuditEventDetailView.as_view(), name="detail"),
    path("charts/", views.AuditChartsView.as_view(), name="charts"),
    path("verify/", views.AuditVerifyView.as_view(), name="verify"),
    path("sinks/", views.AuditSinkListView.as_view(), name="sinks"),
    path("sinks/<int:pk>/", views.AuditSinkDetailView.as_view(), name="sink"),
    path("export/", views.AuditExportView.as_view(), name="export"),
    path("exports/<int:pk>/", views.AuditExportDetailView.as_view(), name="export_detail"),
    path(
        "exports/<int:pk>/download/",
        views.AuditExportDownloadView.as_view(),
        name="export_download",
    ),
]
