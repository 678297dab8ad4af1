from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "apps.connections"
    label = "connections"

    def ready(self) -> None:
        # Every encrypted field (of every app) reads and writes through the key ring.
        from apps.connections import keyring

        keyring.install()
