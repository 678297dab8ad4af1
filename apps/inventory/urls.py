from django.urls import path

from apps.inventory import views

app_name = "inventory"
urlpatterns = [
    path("", views.InventoryView.as_view(), name="list"),
    path("<str:finding_id>/", views.FindingView.as_view(), name="detail"),
    path("<str:finding_id>/role/", views.RoleProposalView.as_view(), name="role"),
]
