from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "apps.workers"
    label = "workers"

    def ready(self) -> None:
        from apps.workers import schema  # noqa: F401 - registers the OpenAPI auth scheme
