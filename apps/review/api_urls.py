"""Management API routes of this app, mounted under /api/v1/orgs/<org_slug>/."""

from django.urls import URLPattern, URLResolver, path

from apps.review import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("audit/events/", api.AuditEventListAPIView.as_view(), name="audit-event-list"),
    path(
        "audit/events/<int:pk>/", api.AuditEventDetailAPIView.as_view(), name="audit-event-detail"
    ),
    path("audit/verify/", api.AuditVerifyAPIView.as_view(), name="audit-verify"),
    path("audit/sinks/", api.AuditSinkListCreateAPIView.as_view(), name="audit-sink-list"),
    path("audit/sinks/<int:pk>/test/", api.AuditSinkTestAPIView.as_view(), name="audit-sink-test"),
    path("audit/export.<str:fmt>", api.AuditEventExportAPIView.as_view(), name="audit-export"),
    path("audit/exports/", api.AuditExportJobListCreateAPIView.as_view(), name="audit-export-list"),
    path(
        "audit/exports/<int:export_id>/",
        api.AuditExportJobDetailAPIView.as_view(),
        name="audit-export-detail",
    ),
    path(
        "audit/exports/<int:export_id>/download/",
        api.AuditExportJobDownloadAPIView.as_view(),
        name="audit-export-download",
    ),
]
