"""The one registry of audit actions (after authentik's `EventAction` and Zulip's
`AuditLogEventType`): every event Grantry writes has a name here, with its category, its OCSF
class and a human label. The writer (`audit_record`) refuses a name that is not here, and the
filter's suggestions, the charts, the OCSF mapping and docs/audit-actions.md read this table,
never a list of their own. A new event type is one line below.

Names are `<category>.<what happened>`; the category is the part before the first dot. Rows
written before a name was registered (or renamed) still read: `get()` answers None for them
and `ocsf_class_of()` falls back to the naming rule."""

from __future__ import annotations

from dataclasses import dataclass

# OCSF 1.x classes the mapping (apps.audit.ocsf) builds.
API_ACTIVITY, ACCOUNT_CHANGE, AUTHENTICATION = 6003, 3001, 3002


@dataclass(frozen=True)
class Category:
    key: str
    label: str  # what the filter's suggestion for "<key>." says


@dataclass(frozen=True)
class AuditAction:
    name: str
    category: Category
    label: str
    ocsf_class: int


class UnregisteredAuditAction(ValueError):
    """An event name that is not in the registry: a programming error, refused before any
    row is written (so the change it would have recorded does not happen either)."""


_ACCOUNT_PREFIXES = ("worker.", "token.", "member.", "user.", "invitation.")


def _ocsf_rule(name: str) -> int:
    """The OCSF class a name falls in by its shape (the rule the registry applies)."""
    if "login" in name or "logout" in name or name.startswith("auth."):
        return AUTHENTICATION
    if name.startswith(_ACCOUNT_PREFIXES):
        return ACCOUNT_CHANGE
    return API_ACTIVITY


CATEGORIES: dict[str, Category] = {
    c.key: c
    for c in (
        Category("broker", "Every agent call"),
        Category("mcp", "MCP: requests, clients (OAuth grants, issued tokens, policy), tools"),
        Category("approval", "Approvals of agent calls"),
        Category("token", "Worker tokens: minted, rolled, revoked, leaked"),
        Category("worker", "Workers: created, changed, disabled"),
        Category("killswitch", "Kill switches"),
        Category("role", "Roles and rules"),
        Category("connection", "Connections"),
        Category("provider_app", "OAuth apps of providers"),
        Category("provider", "Custom providers and actions"),
        Category("member", "Members and invitations"),
        Category("personal_token", "Personal API tokens"),
        Category("org", "Organization settings"),
        Category("auth", "Sign-ins and account security"),
        Category("audit", "The audit trail: exports, verification, sinks, signing keys, archives"),
        Category("inventory", "The migration off raw keys"),
        Category("admin", "Changes made in the Django admin"),
    )
}

# (name, label). The label says what happened, for a person reading the trail.
_ACTIONS: tuple[tuple[str, str], ...] = (
    ("broker.execute", "Agent call of a catalog action"),
    ("broker.execute.attempt", "Agent call of a catalog action: upstream about to be called"),
    ("broker.proxy", "Agent call through the proxy"),
    ("broker.proxy.attempt", "Agent call through the proxy: upstream about to be called"),
    ("broker.check", "Dry run (policy check, nothing called)"),
    ("mcp.request", "MCP request refused before any tool ran"),
    ("mcp.code_reused", "MCP client: authorization code reused"),
    ("mcp.grant_approved", "MCP client: grant approved"),
    ("mcp.grant_revoked", "MCP client: grant revoked"),
    ("mcp.id_jag_accepted", "MCP client: access token issued for a company IdP's ID-JAG"),
    ("mcp.id_jag_refused", "MCP client: ID-JAG refused"),
    ("mcp.policy_changed", "MCP client policy changed"),
    ("mcp.refresh_refused", "MCP client: refresh token refused"),
    ("mcp.refresh_reused", "MCP client: refresh token reused"),
    ("mcp.token_issued", "MCP client: access token issued"),
    ("mcp.token_revoked_by_client", "MCP client: token revoked by the client"),
    ("mcp.tool_approved", "MCP server tool approved"),
    ("mcp.tool_changed", "MCP server tool changed upstream"),
    ("mcp.tools_listed", "MCP server tools listed and pinned"),
    ("approval.requested", "Approval requested"),
    ("approval.approval_recorded", "Approval recorded (more needed)"),
    ("approval.approved", "Approval granted"),
    ("approval.denied", "Approval denied"),
    ("approval.claim_refused", "Approved call refused at claim"),
    ("approval.executed", "Approved call executed"),
    ("approval.expired", "Approval expired"),
    ("approval.voided", "Approval voided"),
    ("approval.settings_changed", "Approval settings changed"),
    ("token.minted", "Worker token minted"),
    ("token.rolled", "Worker token rolled"),
    ("token.revoked", "Worker token revoked"),
    ("token.leaked", "Token reported leaked and revoked"),
    ("token.expired_in_use", "Expired token used"),
    ("token.dpop_refused", "Key-bound token used without a valid DPoP proof of its key"),
    ("token.exchanged", "Worker token issued for an outside identity (token exchange)"),
    ("token.exchange_refused", "Token exchange refused"),
    ("worker.created", "Worker created"),
    ("worker.changed", "Worker changed"),
    ("worker.dpop_changed", "Worker's DPoP requirement turned on or off"),
    ("worker.deleted", "Worker deleted"),
    ("worker.disabled", "Worker disabled"),
    ("worker.enabled", "Worker enabled"),
    ("worker.member_gone", "Worker stopped: the member it acts for left or was disabled"),
    ("worker.trust_policy_added", "Worker trust policy added"),
    ("worker.trust_policy_changed", "Worker trust policy enabled or disabled"),
    ("worker.trust_policy_removed", "Worker trust policy removed"),
    ("killswitch.org", "Organization kill switch"),
    ("killswitch.worker", "Worker kill switch"),
    ("role.created", "Role created"),
    ("role.changed", "Role changed"),
    ("role.narrowed", "Role narrowed to what was used"),
    ("role.deleted", "Role deleted"),
    ("connection.created", "Connection created"),
    ("connection.reconnected", "Connection reconnected"),
    ("connection.connect_failed", "Connection failed to connect"),
    ("connection.refreshed", "Connection credential refreshed"),
    ("connection.refresh_failed", "Connection refresh failed"),
    ("connection.needs_reauth", "Connection needs to be reconnected"),
    ("connection.key_replaced", "Connection key replaced"),
    ("connection.retired_key_purged", "Retired key purged"),
    ("connection.disconnected", "Connection disconnected"),
    ("connection.revocation_failed", "Revocation at the provider failed"),
    ("provider_app.created", "Provider OAuth app created"),
    ("provider_app.updated", "Provider OAuth app updated"),
    ("provider.custom_created", "Custom provider created"),
    ("provider.custom_updated", "Custom provider updated"),
    ("provider.custom_deleted", "Custom provider deleted"),
    ("provider.custom_action_created", "Custom action created"),
    ("provider.custom_action_deleted", "Custom action deleted"),
    ("provider.custom_actions_imported", "Custom actions imported"),
    ("member.invited", "Member invited"),
    ("member.invitation_revoked", "Invitation revoked"),
    ("member.joined", "Member joined"),
    ("member.role_changed", "Member's role changed"),
    ("member.removed", "Member removed"),
    ("member.disabled", "Member's account disabled"),
    ("personal_token.minted", "Personal API token minted"),
    ("personal_token.revoked", "Personal API token revoked"),
    ("org.created", "Organization created"),
    ("org.updated", "Organization settings changed"),
    ("org.mfa_required_blocked", "Member without a second factor sent to set one up"),
    ("auth.login", "Signed in"),
    ("auth.login_failed", "Sign-in failed"),
    ("auth.logout", "Signed out"),
    ("auth.failed", "Token authentication failed"),
    ("auth.mfa_enabled", "Second factor added"),
    ("auth.mfa_disabled", "Second factor removed"),
    ("auth.mfa_failed", "Second factor failed"),
    ("auth.mfa_recovery_codes_generated", "Recovery codes generated"),
    ("auth.password_changed", "Password changed"),
    ("auth.password_reset", "Password reset"),
    ("auth.password_set", "Password set"),
    ("auth.email_added", "Email address added"),
    ("auth.email_removed", "Email address removed"),
    ("auth.email_primary_changed", "Primary email address changed"),
    ("auth.email_verified", "Email address verified"),
    ("audit.exported", "Audit trail exported"),
    ("audit.retention_set", "Audit retention changed"),
    ("audit.archived", "Audit month archived and verified"),
    ("audit.archive_failed", "Audit archive failed verification"),
    ("audit.partition_dropped", "Audit month left the live table (archived)"),
    ("audit.verified", "Audit chains verified"),
    ("audit.signing_key_created", "Audit signing key created"),
    ("audit.sink_created", "Audit sink created"),
    ("audit.sink_deleted", "Audit sink deleted"),
    ("audit.sink_resumed", "Audit sink resumed"),
    ("audit.sink_test", "Audit sink tested"),
    ("audit.sink_dead_letter", "Audit sink gave up after retries"),
    ("inventory.scan_uploaded", "Scan uploaded"),
    ("inventory.config_rewritten", "Agent config rewritten"),
    ("inventory.role_created", "Role created from the inventory"),
    ("inventory.rotation_unconfirmed", "Rotation not confirmed at the provider"),
    # One per finding state (apps.inventory.models.FindingState; tests pin the two lists).
    ("inventory.finding_found", "Raw key found"),
    ("inventory.finding_imported", "Raw key imported into a connection"),
    ("inventory.finding_config_replaced", "Raw key replaced in the config"),
    ("inventory.finding_rotated", "Raw key rotated at the provider"),
    ("inventory.finding_confirmed_unused", "Raw key confirmed unused"),
    # apps.organizations.admin.AuditedAdmin: admin.<model>.<added|changed|deleted>.
    *(
        (f"admin.{model}.{verb}", f"Django admin: {model} {verb}")
        for model in ("organization", "membership", "invitation")
        for verb in ("added", "changed", "deleted")
    ),
)

REGISTRY: dict[str, AuditAction] = {
    name: AuditAction(
        name=name,
        category=CATEGORIES[name.split(".", 1)[0]],
        label=label,
        ocsf_class=_ocsf_rule(name),
    )
    for name, label in _ACTIONS
}

# Names the charts and selectors single out.
DRY_RUN = REGISTRY["broker.check"].name
CALL_ACTIONS = (REGISTRY["broker.execute"].name, REGISTRY["broker.proxy"].name)


def get(name: str) -> AuditAction | None:
    return REGISTRY.get(name)


def require(name: str) -> AuditAction:
    """The registered action `name`, or UnregisteredAuditAction."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnregisteredAuditAction(
            f"{name!r} is not a registered audit action (apps/audit/actions.py)"
        ) from None


def ocsf_class_of(name: str) -> int:
    action = REGISTRY.get(name)
    return action.ocsf_class if action is not None else _ocsf_rule(name)


def label_of(name: str) -> str:
    action = REGISTRY.get(name)
    return action.label if action is not None else name


def suggestions() -> list[tuple[str, str]]:
    """The filter's suggestions: every category ("token." matches every token event), and
    the agent-call actions one by one."""
    singled_out = [(name, REGISTRY[name].label) for name in (*CALL_ACTIONS, DRY_RUN)]
    return [("broker.", CATEGORIES["broker"].label), *singled_out] + [
        (f"{key}.", category.label) for key, category in CATEGORIES.items() if key != "broker"
    ]
