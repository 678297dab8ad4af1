"""Built-in provider definitions, one module per provider.

`BUILTIN_PROVIDERS` holds every provider whose URLs are fixed; the Sandbox is
built at lookup time (its URLs follow settings) by the registry. A relative
`userinfo_url` ("/user") is resolved against the API base URL at lookup time,
so overriding the base URL (GitHub Enterprise) moves the identity call too.
"""

from __future__ import annotations

from apps.providers.catalog import Provider
from apps.providers.definitions import (
    airtable,
    asana,
    github,
    gitlab,
    google,
    hubspot,
    jira,
    linear,
    microsoft,
    notion,
    openai,
    salesforce,
    slack,
    stripe,
    zendesk,
)

BUILTIN_PROVIDERS: tuple[Provider, ...] = tuple(
    module.PROVIDER
    for module in (
        github,
        gitlab,
        google,
        slack,
        notion,
        linear,
        jira,
        hubspot,
        salesforce,
        microsoft,
        asana,
        zendesk,
        stripe,
        openai,
        airtable,
    )
)
