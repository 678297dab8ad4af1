"""Dashboard routes, mounted under /o/<org_slug>/approvals/."""

from django.urls import path

from apps.approvals import views

app_name = "approvals"
urlpatterns = [
    path("", views.ApprovalListView.as_view(), name="list"),
    path("settings/", views.ApprovalSettingsView.as_view(), name="settings"),
    path("<str:approval_id>/", views.ApprovalDetailView.as_view(), name="detail"),
    path("<str:approval_id>/link/<str:token>/", views.ApprovalLinkView.as_view(), name="link"),
]
