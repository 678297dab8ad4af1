from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"

    def ready(self) -> None:
        # Connect the audit receivers for login, logout, MFA and passwords.
        # And the receiver that revokes a removed member's personal tokens.
        from apps.accounts import (
            events,  # noqa: F401 - imported for its signal receivers
            services,  # noqa: F401 - imported for its signal receivers
        )
