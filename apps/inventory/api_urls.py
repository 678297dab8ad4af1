"""Management API routes of this app, mounted under /api/v1/orgs/<org_slug>/."""

from django.urls import path

from apps.inventory import api

FINDING = "inventory/findings/<str:finding_id>/"

urlpatterns = [
    path("inventory/summary/", api.SummaryAPIView.as_view(), name="inventory-summary"),
    path("inventory/scans/", api.ScanUploadAPIView.as_view(), name="inventory-scan-upload"),
    path("inventory/findings/", api.FindingListAPIView.as_view(), name="inventory-finding-list"),
    path(FINDING, api.FindingDetailAPIView.as_view(), name="inventory-finding-detail"),
    path(f"{FINDING}import/", api.ImportAPIView.as_view(), name="inventory-finding-import"),
    path(
        f"{FINDING}config-replaced/",
        api.ConfigReplacedAPIView.as_view(),
        name="inventory-finding-config-replaced",
    ),
    path(f"{FINDING}new-key/", api.NewKeyAPIView.as_view(), name="inventory-finding-new-key"),
    path(
        f"{FINDING}confirm-rotated/",
        api.ConfirmRotatedAPIView.as_view(),
        name="inventory-finding-confirm-rotated",
    ),
    path(
        f"{FINDING}role-proposal/",
        api.RoleProposalAPIView.as_view(),
        name="inventory-finding-role-proposal",
    ),
]
