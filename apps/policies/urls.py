from django.urls import path

from apps.policies import views

app_name = "policies"
urlpatterns = [
    path("", views.RoleListView.as_view(), name="list"),
    path("new/", views.RoleCreateView.as_view(), name="create"),
    path("<int:role_id>/", views.RoleDetailView.as_view(), name="detail"),
    path("<int:role_id>/edit/", views.RoleEditView.as_view(), name="edit"),
    path("<int:role_id>/delete/", views.RoleDeleteView.as_view(), name="delete"),
    path("<int:role_id>/source/", views.RoleSourceView.as_view(), name="source"),
    path("<int:role_id>/test/", views.RoleDryRunView.as_view(), name="test"),
    path("<int:role_id>/simulate/", views.RoleSimulateView.as_view(), name="simulate"),
    path(
        "<int:role_id>/least-privilege/",
        views.RoleLeastPrivilegeView.as_view(),
        name="least_privilege",
    ),
    path("<int:role_id>/rules/new/", views.RuleAddView.as_view(), name="rule_add"),
    path(
        "<int:role_id>/rules/<int:rule_id>/delete/",
        views.RuleDeleteView.as_view(),
        name="rule_delete",
    ),
    path("<int:role_id>/rules/restore/", views.RuleRestoreView.as_view(), name="rule_restore"),
]
