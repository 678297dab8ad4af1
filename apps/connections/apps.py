from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "apps.connections"
    label = "connections"

    def ready(self) -> None:
        # Every encrypted field (of every app) reads and writes through the key ring.
        from apps.audit import filters as audit_filters
        from apps.connections import keyring, selectors
        from apps.providers import services as provider_services

        keyring.install()
        # The answer the catalog asks for (apps.core.ports).
        provider_services.live_connection_names.plug(selectors.live_connection_names)
        audit_filters.IDS_NAMED["connection"].plug(selectors.connection_ids_named)
