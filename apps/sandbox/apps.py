from django.apps import AppConfig


class SandboxConfig(AppConfig):
    name = "apps.sandbox"
    label = "sandbox"

    def ready(self) -> None:
        # No app imports the Sandbox (it is installed only when GRANTRY_SANDBOX_ENABLED): it
        # plugs in what the demo seed asks of it (apps.core.ports).
        from apps.connections import demo as connection_demo
        from apps.dashboard import demo as dashboard_demo
        from apps.sandbox import services

        connection_demo.sandbox_tokens_issue.plug(services.sandbox_tokens_issue)
        connection_demo.sandbox_client_register.plug(services.sandbox_client_register)
        dashboard_demo.sandbox_seed_user_data.plug(services.sandbox_seed_user_data)
