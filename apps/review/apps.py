from django.apps import AppConfig


class ReviewConfig(AppConfig):
    """The reviewer's side of the trail: the audit pages, their management API and
    `manage.py audit_verify`. Above apps.audit (which every app writes to) because
    these pages need the tenant mixins and the catalog."""

    name = "apps.review"
    label = "review"
