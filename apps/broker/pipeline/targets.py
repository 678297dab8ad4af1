"""The targets a call can be made to. A target type implements exactly the two steps in
which targets differ: `decide` (which connection, and the policy's decision) and `prepare`
(the request to send upstream). Every other step is the pipeline's (steps.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apps.audit.models import Decision, Outcome
from apps.broker.pipeline.call import AgentCall, Chosen, Upstream
from apps.broker.results import BrokerResult, fail, input_digest
from apps.connections.models import Connection
from apps.connections.selectors import connections_for_call
from apps.policies.evaluate import Call as PolicyCall
from apps.policies.evaluate import RuleSpec, UnsafePath, action_matches, evaluate, normalize_path
from apps.policies.selectors import role_rules
from apps.providers.calls import (
    BaseURLParamError,
    InvalidInput,
    build_request,
    resolve_base_url_params,
)
from apps.providers.catalog import Action
from apps.providers.registry import UnknownAction, UnknownProvider, get_provider, resolve_action
from apps.workers.auth import AgentContext


@dataclass
class ActionTarget:
    """A catalog action called with JSON input (execute, check, MCP tools/call)."""

    action_name: str
    connection_ref: str | int | None
    input: dict[str, Any]
    verb_base: str = "broker.execute"
    action: Action | None = None

    def audit_fields(self, ctx: AgentContext) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "action": self.action_name,
            "input_sha256": input_digest(self.input),
        }
        if ctx.store_broker_input:
            fields["input"] = self.input
        return fields

    def decide(self, call: AgentCall) -> Chosen | BrokerResult:
        """Decide on the connections the role allows for this action: the one named,
        or — naming none — the only allowed one of the provider's connections. Asks
        for `connection` only when more than one allowed connection fits."""
        ctx = call.ctx
        try:
            call.provider, action = resolve_action(
                self.action_name, organization=ctx.organization_id
            )
        except UnknownAction:
            return call.refuse(
                fail(
                    404,
                    "unknown_action",
                    f"There is no action {self.action_name!r}. GET /api/v1/actions lists yours.",
                )
            )
        self.action = action
        call.provider_key = provider_key = action.provider_key
        candidates = connections_for_call(
            organization_id=ctx.organization_id,
            provider_key=provider_key,
            ref=self.connection_ref,
            acting_for=ctx.acting_for_id,
        )
        rules = role_rules(ctx.role_id, ctx.rules_version)
        if (
            any(r.on_behalf_of for r in rules)
            and not any(c.owner_id is not None for c in candidates)
            and (candidates or self.connection_ref in (None, ""))
            and not _plain_rule_covers(rules, action)
        ):
            # Only an `on_behalf_of` rule could allow it, and there is no personal
            # connection of the member the worker acts for to use: say which is missing.
            missing = _no_personal_connection(call, rules, action)
            if missing is not None:
                return missing
        if not candidates:
            if self.connection_ref not in (None, ""):
                return call.refuse(
                    fail(
                        404,
                        "connection_not_found",
                        f"No {provider_key} connection {str(self.connection_ref)!r} in this "
                        "organization.",
                    )
                )
            return call.refuse(
                fail(
                    409,
                    "no_connection",
                    f"This organization has no {provider_key} connection. Ask an admin to "
                    f"connect {provider_key} in Grantry.",
                )
            )
        decided = [
            (
                connection,
                evaluate(
                    rules,
                    PolicyCall.for_action(
                        action_name=action.name,
                        action_class=str(action.action_class),
                        connection_id=connection.pk,
                        connection_name=connection.name,
                        input=self.input,
                        role_name=ctx.role_name,
                        # Only the acting member's own connection comes back personal.
                        on_behalf_of=connection.owner_id is not None,
                    ),
                ),
            )
            for connection in candidates
        ]
        # A call a rule allows only after approval fits too (the approval step decides).
        allowed = [(c, d) for c, d in decided if d.allowed or d.approval_required]
        if len(allowed) == 1:
            if allowed[0][0].owner_id is not None:
                call.metadata["personal"] = True  # the simulation replays it as such
            return Chosen(*allowed[0])
        if len(allowed) > 1:
            names = [c.name for c, _ in allowed]
            return call.refuse(
                fail(
                    400,
                    "connection_required",
                    "More than one connection your role allows fits; name one in "
                    f"'connection' ({', '.join(names)}).",
                    connections=names,
                )
            )
        # Denied on every candidate: the reason of the named (or first) one.
        call.connection = candidates[0] if len(candidates) == 1 else None
        reason = decided[0][1].reason
        return call.refuse(
            fail(
                403,
                "denied",
                reason,
                action=self.action_name,
                **({"connection": candidates[0].name} if len(candidates) == 1 else {}),
            )
        )

    def prepare(self, call: AgentCall, chosen: Chosen) -> Upstream | BrokerResult:
        assert self.action is not None
        connection = chosen.connection
        assert call.provider is not None
        try:
            prepared = build_request(
                call.provider, self.action, self.input, base_url_params=connection.base_url_params
            )
        except InvalidInput as exc:
            fields = [e.as_dict() for e in exc.errors]
            return call.refuse(
                fail(
                    400,
                    "invalid_input",
                    "The input does not match the action's schema.",
                    fields=fields,
                ),
                outcome=Outcome.FAILURE,
                decision=Decision.ALLOWED,
                extra={"fields": [f["path"] for f in fields]},
            )
        except BaseURLParamError as exc:
            return misconfigured(call, connection, exc)
        return Upstream(
            method=prepared.method,
            url=prepared.url,
            headers=prepared.headers,
            query=prepared.query,
            json_body=prepared.json_body,
            form_body=prepared.form_body,
        )


@dataclass
class ProxyTarget:
    """A raw HTTP call passed through to a connection's API (`/api/v1/proxy/…`)."""

    connection_ref: str
    method: str
    path: str
    query: str
    body: bytes
    content_type: str
    verb_base: str = "broker.proxy"
    clean_path: str = ""

    def audit_fields(self, ctx: AgentContext) -> dict[str, Any]:  # noqa: ARG002 - the Target protocol's signature
        return {
            "method": self.method,
            "path": self.path[:500],
            "input_sha256": input_digest(
                {"query": self.query, "body": self.body.decode("utf-8", "replace")}
            ),
        }

    def decide(self, call: AgentCall) -> Chosen | BrokerResult:
        ctx = call.ctx
        found = connections_for_call(
            organization_id=ctx.organization_id,
            provider_key=None,
            ref=self.connection_ref,
            acting_for=ctx.acting_for_id,
        )
        if not found:
            return call.refuse(
                fail(
                    404,
                    "connection_not_found",
                    f"No connection {self.connection_ref!r} in this organization.",
                )
            )
        connection = call.connection = found[0]
        call.provider_key = connection.provider_key
        if self.path.startswith("/"):
            # A leading '//' would name a host.
            return call.refuse(fail(400, "unsafe_path", "The proxy path must not start with '/'."))
        try:
            self.clean_path = normalize_path("/" + self.path if self.path else "/")
        except UnsafePath as exc:
            return call.refuse(fail(400, "unsafe_path", f"The proxy path was rejected: {exc}."))
        decision = evaluate(
            role_rules(ctx.role_id, ctx.rules_version),
            PolicyCall.for_proxy(
                provider_key=connection.provider_key,
                method=self.method,
                path=self.clean_path,
                connection_id=connection.pk,
                connection_name=connection.name,
                role_name=ctx.role_name,
                on_behalf_of=connection.owner_id is not None,
            ),
        )
        if not decision.allowed and not decision.approval_required:
            return call.refuse(
                fail(
                    403,
                    "denied",
                    decision.reason,
                    method=self.method,
                    path=self.clean_path,
                    connection=connection.name,
                )
            )
        return Chosen(connection, decision)

    def prepare(self, call: AgentCall, chosen: Chosen) -> Upstream | BrokerResult:
        connection = chosen.connection
        try:
            provider = call.provider = get_provider(
                call.provider_key, organization=call.ctx.organization_id
            )
            # Per-connection URL parameters (e.g. a Zendesk subdomain) shape the base URL.
            base = resolve_base_url_params(provider, connection.base_url_params).api_base_url
        except (UnknownProvider, BaseURLParamError) as exc:
            return misconfigured(call, connection, exc)
        url = base.rstrip("/") + self.clean_path + (f"?{self.query}" if self.query else "")
        headers = {"Content-Type": self.content_type} if self.body and self.content_type else {}
        return Upstream(method=self.method, url=url, headers=headers, content=self.body or None)


def _plain_rule_covers(rules: list[RuleSpec], action: Action) -> bool:
    """Some rule that is not `on_behalf_of` covers the action (so a shared connection may
    still serve it, and the usual reasons apply)."""
    return any(
        not r.on_behalf_of and action_matches(r, action.name, str(action.action_class))
        for r in rules
    )


def _no_personal_connection(
    call: AgentCall, rules: list[RuleSpec], action: Action
) -> BrokerResult | None:
    """The clear refusal when an `on_behalf_of` rule covers the action but there is no
    personal connection to use: the worker acts for no member (403 `no_member`), or the
    member has no usable connection of the provider (409 `no_personal_connection`).
    None when no such rule covers the action."""
    rule = next(
        (
            r
            for r in rules
            if r.on_behalf_of and action_matches(r, action.name, str(action.action_class))
        ),
        None,
    )
    if rule is None:
        return None
    ctx, provider = call.ctx, action.provider_key
    if ctx.acting_for_id is None:
        return call.refuse(
            fail(
                403,
                "no_member",
                f"Rule #{rule.rule_id} allows {action.name} on the personal {provider} "
                f"connection of the member the worker acts for, but worker "
                f"'{ctx.worker_name}' acts for no member. An admin can bind it to a member.",
                action=action.name,
            )
        )
    return call.refuse(
        fail(
            409,
            "no_personal_connection",
            f"Rule #{rule.rule_id} allows {action.name} on the personal {provider} connection "
            f"of {ctx.acting_for_label}, the member this worker acts for, and they have none. "
            f"They can connect their own {provider} account in Grantry (Connections → "
            "Connect my account).",
            action=action.name,
        )
    )


def misconfigured(call: AgentCall, connection: Connection, exc: Exception) -> BrokerResult:
    """A connection whose provider or URL parameters no longer resolve: 409, audited."""
    return call.refuse(
        fail(
            409,
            "connection_misconfigured",
            f"The connection {connection.name!r} cannot be used: {exc} "
            "Ask an admin to check the connection.",
            connection=connection.name,
        ),
        outcome=Outcome.ERROR,
        decision=Decision.ALLOWED,
    )
