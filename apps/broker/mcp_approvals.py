"""A tools/call that waits for a person's approval, over MCP.

MCP 2026-07-28 multi-round-trip requests: a client that declares elicitation gets
the approval as an `input_required` result, with one elicitation (URL mode, to the
approval's page, when the client takes URLs; else a form with nothing to fill in)
and a signed `requestState` naming the approval. When the person answers, the
client retries the same tools/call with the answer and the state: "accept" runs
the call with that approval (still pending: asked again; approved: it executes
once), "decline"/"cancel" ends the wait and leaves the approval pending. Every
other client gets the text result, with `_approval` to send back
(docs/agent-api.md, "Approvals")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mcp_types as types
from django.core import signing

from apps.broker.results import input_digest
from apps.workers.auth import AgentContext

APPROVAL_ARG = "_approval"

APPROVAL_INPUT_KEY = "grantry_approval"
_STATE_SALT = "grantry.mcp.approval-state"
_STATE_MAX_AGE = 8 * 24 * 3600  # beyond the longest approval expiry (7 days)


class InvalidRoundTrip(Exception):
    """A retry whose requestState or inputResponses cannot be trusted (-32602)."""


@dataclass(frozen=True)
class _Round:
    approval_id: str
    accepted: bool


def elicitation_mode(capabilities: Any) -> str | None:
    """ "url" or "form" when the client declared elicitation (2026-07-28 envelope)."""
    if not isinstance(capabilities, dict):
        return None
    elicitation = capabilities.get("elicitation")
    if not isinstance(elicitation, dict):
        return None
    if isinstance(elicitation.get("url"), dict):
        return "url"
    return "form"  # an empty object means form mode (the spec's default)


def _state_binding(ctx: AgentContext, name: str, raw_arguments: Any) -> dict[str, str]:
    return {"t": ctx.token_public_id, "n": name, "d": input_digest(raw_arguments or {})}


def ask_for_approval(
    ctx: AgentContext, name: str, raw_arguments: Any, pending: dict[str, Any], mode: str
) -> types.InputRequiredResult:
    approval = pending["approval"]
    message = (
        f"{approval['summary']} Grantry holds this call until a person approves it "
        f"(approval {approval['id']}). Approvers decide on Grantry's approval page; "
        "continue once it is approved, or decline to stop waiting."
    )
    params: types.ElicitRequestParams
    if mode == "url":
        params = types.ElicitRequestURLParams(message=message, url=approval["page_url"])
    else:
        params = types.ElicitRequestFormParams(
            message=f"{message} Approval page: {approval['page_url']}",
            requested_schema={"type": "object", "properties": {}},
        )
    state = signing.dumps(
        {"a": approval["id"], **_state_binding(ctx, name, raw_arguments)}, salt=_STATE_SALT
    )
    return types.InputRequiredResult(
        input_requests={APPROVAL_INPUT_KEY: types.ElicitRequest(params=params)},
        request_state=state,
    )


def approval_round(
    ctx: AgentContext, name: str, arguments: dict[str, Any], params: dict[str, Any]
) -> _Round | None:
    """The retry of an `input_required` round: the approval its signed state names and
    whether the person accepted. None for a first call. The state is the client's
    echo, so it is verified (signature, age, token, tool, arguments) before use."""
    state = params.get("requestState")
    if state is None:
        return None
    try:
        payload = signing.loads(str(state), salt=_STATE_SALT, max_age=_STATE_MAX_AGE)
    except signing.BadSignature:
        raise InvalidRoundTrip("Invalid or expired requestState.") from None
    if not isinstance(payload, dict) or any(
        payload.get(k) != v for k, v in _state_binding(ctx, name, arguments).items()
    ):
        raise InvalidRoundTrip("Invalid or expired requestState.")
    responses = params.get("inputResponses")
    answer = responses.get(APPROVAL_INPUT_KEY) if isinstance(responses, dict) else None
    action = answer.get("action") if isinstance(answer, dict) else None
    if action not in ("accept", "decline", "cancel"):
        raise InvalidRoundTrip(
            f"inputResponses.{APPROVAL_INPUT_KEY} must be an elicitation result."
        )
    return _Round(approval_id=str(payload["a"]), accepted=action == "accept")


def pending_text(
    approval_id: str, *, approval: dict[str, Any] | None = None, declined: bool = False
) -> types.CallToolResult:
    """The answer every client understands: the call waits for approval `approval_id`."""
    if declined:
        text = (
            f"Stopped waiting. Approval {approval_id} stays pending until a person decides "
            f'or it expires; once approved, call this tool again with "{APPROVAL_ARG}": '
            f'"{approval_id}".'
        )
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])
    assert approval is not None
    document = approval["approval"]
    text = (
        f"Pending approval {approval_id}: {document['summary']} Once a person has "
        f"approved it (poll {document['status_url']}), call this tool again with the same "
        f'arguments plus "{APPROVAL_ARG}": "{approval_id}".'
    )
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        # The argument to send back, named as the text names it (`approval` is the
        # approval's document, `retry_with` what the next call adds to its arguments).
        structured_content={**approval, "retry_with": {APPROVAL_ARG: approval_id}},
        is_error=False,
    )
