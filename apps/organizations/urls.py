from django.urls import path

from apps.organizations import views

app_name = "orgs"
urlpatterns = [
    path("", views.OverviewView.as_view(), name="overview"),
    path("soon/<slug:section>/", views.UpcomingSectionView.as_view(), name="upcoming"),
]
