"""The MCP endpoint (`POST /mcp`, Streamable HTTP, JSON responses, stateless).

Two protocol generations share the one URL:

* 2026-07-28 (stateless): every POST carries `MCP-Protocol-Version`,
  `Mcp-Method` (and `Mcp-Name` for tools/call) plus the `_meta` envelope; the
  client starts with `server/discover`. Envelope and headers are checked by
  the SDK's own `mcp.shared.inbound.classify_inbound_request` (mismatch →
  400 with -32020).
* 2025-11-25 (`initialize` handshake): served statelessly (no
  `Mcp-Session-Id`); notifications answer 202.

Why not the SDK's `StreamableHTTPSessionManager`: it is an ASGI app that needs
an anyio task group started by a lifespan (`session_manager.run()`), while
Grantry is served by granian's WSGI workers (the Procfile) and its
tenant boundary, worker-token authentication, audit and broker are
synchronous Django code. Mounting it would mean switching the whole
deployment to ASGI (changing the hot path the benchmark measures) and
bridging every ORM call through `sync_to_async`. Every response here is one
JSON object (no server-to-client requests, no streaming; asking the client's
user about an approval is 2026-07-28's `input_required` result, a plain
answer), so a plain Django
view that uses the SDK's types (`mcp_types`) for every result and error, and
its classifier for the 2026-07-28 ladder, is a smaller and faster fit.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import mcp_types as types
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    InboundLadderRejection,
    classify_inbound_request,
)
from mcp_types import PROTOCOL_VERSION_META_KEY
from mcp_types.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
)
from mcp_types.methods import CLIENT_REQUESTS
from mcp_types.version import (
    HANDSHAKE_PROTOCOL_VERSIONS,
    LATEST_HANDSHAKE_VERSION,
    LATEST_MODERN_VERSION,
    MODERN_PROTOCOL_VERSIONS,
)
from rest_framework.request import Request

from apps.broker.catalog import allowed_for, mcp_tools_for
from apps.broker.inputs import HostileInput, check_size, parse_json
from apps.broker.mcp_approvals import (
    APPROVAL_ARG,
    InvalidRoundTrip,
    approval_round,
    ask_for_approval,
    elicitation_mode,
    pending_text,
)
from apps.broker.mcp_upstream import SEPARATOR, McpToolTarget, split_name
from apps.broker.pipeline import ActionTarget, RequestMeta, reject_input, run, start
from apps.core.api import APIError, error_response
from apps.workers import dpop
from apps.workers.auth import AgentContext, WorkerTokenAuthentication

SERVER_INFO = types.Implementation(name="grantry", title="Grantry", version="1.0.0")
SERVER_META = {
    "io.modelcontextprotocol/serverInfo": SERVER_INFO.model_dump(
        by_alias=True, mode="json", exclude_none=True
    )
}
CAPABILITIES = types.ServerCapabilities(tools=types.ToolsCapability(list_changed=False))
INSTRUCTIONS = (
    "Grantry brokers SaaS calls for this worker. Each tool is one action your role allows, "
    "or a tool of an MCP server Grantry fronts (named <server>__<tool>); Grantry adds the "
    "credential. A denied call says which rule an admin would have to add."
)
# The tool list depends on the role and on revocation, so no client may cache it.
TOOLS_TTL_MS = 0
CONNECTION_ARG = "connection"
REASON_ARG = "_reason"
_LEGACY_ONLY_KEYS = ("resultType", "ttlMs", "cacheScope")
# Every version this endpoint speaks: the handshake ones `initialize` accepts and the
# stateless one. `server/discover` and the -32022 error name them all.
SERVED_VERSIONS = (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS)


def resource_metadata_url() -> str:
    return f"{settings.GRANTRY_BASE_URL}/.well-known/oauth-protected-resource/mcp"


def protected_resource_metadata(_request: HttpRequest) -> JsonResponse:
    """RFC 9728 metadata for the MCP resource. Its authorization server is Grantry's
    own (apps.mcpauth, issuer <base>/oauth); a static worker token works too."""
    base = settings.GRANTRY_BASE_URL
    return JsonResponse(
        {
            "resource": f"{base}/mcp",
            "authorization_servers": [f"{base}/oauth"],
            "scopes_supported": ["mcp"],
            "bearer_methods_supported": ["header"],
            # RFC 9728 §2: DPoP-bound tokens (RFC 9449) are accepted, and required for the
            # workers that say so.
            "dpop_signing_alg_values_supported": list(dpop.ALGORITHMS),
            "resource_name": "Grantry MCP",
            "resource_documentation": f"{base}/api/docs/",
        }
    )


def _origin_ok(request: HttpRequest) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser: nothing to rebind
    allowed = urlsplit(settings.GRANTRY_BASE_URL)
    got = urlsplit(origin)
    return (got.scheme, got.netloc) == (allowed.scheme, allowed.netloc)


def _unauthorized(exc: APIError) -> HttpResponse:
    """A refused authentication: 401 with the MCP resource-metadata challenge, or the
    error's own status and headers (429 auth_throttled with Retry-After)."""
    if exc.status_code != 401:
        return error_response(
            exc.error_code,
            exc.message,
            status_code=exc.status_code,
            details=exc.details,
            headers=exc.extra_headers,
        )
    refused = exc.extra_headers.get("WWW-Authenticate", "")
    if refused.startswith("DPoP "):
        # A DPoP refusal (RFC 9449 §7.1) keeps its scheme, error and algs.
        challenge = f'{refused}, resource_metadata="{resource_metadata_url()}"'
    else:
        challenge = f'Bearer resource_metadata="{resource_metadata_url()}"'
        if exc.error_code != "token_missing":
            challenge += ', error="invalid_token"'
    return error_response(
        exc.error_code,
        exc.message,
        status_code=401,
        details=exc.details,
        headers={"WWW-Authenticate": challenge},
    )


def _rpc_error(
    request_id: Any, code: int, message: str, data: Any = None, *, status: int | None = None
) -> JsonResponse:
    error = types.JSONRPCError(
        jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message, data=data)
    )
    body = error.model_dump(mode="json", by_alias=True, exclude_none=True)
    body["id"] = request_id
    return JsonResponse(
        body, status=status if status is not None else ERROR_CODE_HTTP_STATUS.get(code, 200)
    )


def _rpc_result(request_id: Any, result: Any, *, legacy: bool) -> JsonResponse:
    body = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    if legacy:
        for key in _LEGACY_ONLY_KEYS:
            body.pop(key, None)
    else:
        body["_meta"] = {**body.get("_meta", {}), **SERVER_META}
    return JsonResponse({"jsonrpc": "2.0", "id": request_id, "result": body})


def _tool(action: Any, connections: list[Any]) -> types.Tool:
    schema = dict(action.input_schema)
    properties = dict(schema.get("properties") or {})
    if len(connections) > 1 and CONNECTION_ARG not in properties:
        # More than one connection the role allows fits: the agent must choose.
        properties[CONNECTION_ARG] = {
            "type": "string",
            "enum": [c.name for c in connections],
            "description": "Which connection to use (your role allows each of these).",
        }
        schema["properties"] = properties
        schema["required"] = [*schema.get("required", []), CONNECTION_ARG]
    is_read = str(action.action_class) == "read"
    return types.Tool(
        name=action.name,
        description=action.description,
        input_schema=schema,
        annotations=types.ToolAnnotations(
            read_only_hint=is_read, destructive_hint=not is_read, open_world_hint=True
        ),
    )


def _upstream_tool(name: str, definition: dict[str, Any]) -> types.Tool | None:
    """A pinned upstream tool under the name the agent sees, as approved (None for a
    definition the SDK's types refuse, or a name past MCP's 128 characters)."""
    if len(name) > 128:
        return None
    try:
        return types.Tool.model_validate({**definition, "name": name})
    except ValueError:
        return None


def _list_tools(ctx: Any, *, only: str | None = None) -> types.ListToolsResult:
    """The catalog actions and upstream tools the role allows; on a connection's own
    URL (`only`), that server's tools under their own names."""
    tools = (
        [] if only is not None else [_tool(a, connections) for a, connections in allowed_for(ctx)]
    )
    for connection, pinned in mcp_tools_for(ctx):
        if only is not None and connection.name != only:
            continue
        name = pinned.name if only is not None else f"{connection.name}{SEPARATOR}{pinned.name}"
        tool = _upstream_tool(name, pinned.approved_definition or {})
        if tool is not None:
            tools.append(tool)
    return types.ListToolsResult(tools=tools, ttl_ms=TOOLS_TTL_MS, cache_scope="private")


def _call_tool(
    ctx: AgentContext,
    params: dict[str, Any],
    request: HttpRequest,
    *,
    capabilities: Any = None,
    only: str | None = None,
) -> types.CallToolResult | types.InputRequiredResult:
    name = str(params.get("name"))
    raw_arguments = params.get("arguments")
    meta = RequestMeta.from_request(request, "mcp")
    if raw_arguments is not None and not isinstance(raw_arguments, dict):
        reject_input(
            ctx, meta, "broker.execute", HostileInput("'arguments' must be a JSON object.")
        )
        raise _ProtocolError(INVALID_PARAMS, "'arguments' must be a JSON object.", audited=True)
    arguments = dict(raw_arguments or {})
    try:
        round_trip = approval_round(ctx, name, arguments, params)
    except InvalidRoundTrip as exc:
        raise _ProtocolError(INVALID_PARAMS, str(exc)) from None
    if round_trip is not None and not round_trip.accepted:
        return pending_text(round_trip.approval_id, declined=True)
    upstream = (only, name) if only is not None else split_name(name)
    # A catalog action may be told which connection; an upstream tool's arguments are
    # its own (one of them may well be called "connection").
    connection = arguments.pop(CONNECTION_ARG, None) if upstream is None else None
    # An approved call re-sent (docs/agent-api.md, "Approvals"): not the action's input.
    approval_id = arguments.pop(APPROVAL_ARG, "")
    if round_trip is not None:
        approval_id = round_trip.approval_id
    meta = replace(meta, approval_id=approval_id, reason=arguments.pop(REASON_ARG, ""))
    if connection is not None and (
        isinstance(connection, bool) or not isinstance(connection, str | int)
    ):
        message = f"'{CONNECTION_ARG}' must be a connection id or name."
        reject_input(ctx, meta, "broker.execute", HostileInput(message))
        raise _ProtocolError(INVALID_PARAMS, message, audited=True)
    target = (
        McpToolTarget.named(upstream[0], upstream[1], arguments)
        if upstream is not None
        else ActionTarget(name, connection, arguments)
    )
    result = run(start(ctx, target, meta))
    if result.pending is not None:
        elicitation = elicitation_mode(capabilities)
        if elicitation is not None:
            return ask_for_approval(ctx, name, raw_arguments, result.pending, elicitation)
        return pending_text(result.pending["approval"]["id"], approval=result.pending)
    return _tool_result(result)


def _tool_result(result: Any) -> types.CallToolResult:
    """A finished call as a tool result: Grantry's refusal, or the upstream's answer (an
    upstream MCP server's content, structuredContent and isError as it sent them)."""
    if result.error is None and result.mcp_result is not None:
        return types.CallToolResult.model_validate(result.mcp_result)
    if result.error is not None:
        error = result.error
        text = f"{error.code}: {error.message}"
        if error.code == "invalid_input" and error.details.get("fields"):
            text += " " + json.dumps(error.details["fields"])
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], is_error=True
        )
    body = result.body
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    status = result.upstream_status or 0
    if status >= 400:
        text = f"upstream answered {status}: {text}"
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text or "")],
        structured_content=body if isinstance(body, dict) else None,
        is_error=status >= 400,
    )


def _dispatch(
    ctx: Any,
    method: str,
    params: dict[str, Any],
    request: HttpRequest,
    *,
    legacy: bool,
    capabilities: Any = None,
    only: str | None = None,
) -> Any:
    if method == "tools/list":
        return _list_tools(ctx, only=only)
    if method == "tools/call":
        if not isinstance(params.get("name"), str):
            raise _ProtocolError(INVALID_PARAMS, "tools/call needs a tool name.")
        return _call_tool(ctx, params, request, capabilities=capabilities, only=only)
    if not legacy and (method, LATEST_MODERN_VERSION) not in CLIENT_REQUESTS:
        # Methods the stateless generation removed (ping, initialize, logging/…).
        raise _ProtocolError(METHOD_NOT_FOUND, f"Method not found: {method}")
    if method == "ping":
        return types.EmptyResult()
    if legacy and method == "initialize":
        requested = params.get("protocolVersion")
        version = (
            requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else (LATEST_HANDSHAKE_VERSION)
        )
        return types.InitializeResult(
            protocol_version=version,
            capabilities=CAPABILITIES,
            server_info=SERVER_INFO,
            instructions=INSTRUCTIONS,
        )
    if not legacy and method == "server/discover":
        return types.DiscoverResult(
            supported_versions=list(SERVED_VERSIONS),
            capabilities=CAPABILITIES,
            instructions=INSTRUCTIONS,
            ttl_ms=TOOLS_TTL_MS,
            cache_scope="private",
        )
    raise _ProtocolError(METHOD_NOT_FOUND, f"Method not found: {method}")


class _ProtocolError(Exception):
    def __init__(self, code: int, message: str, *, audited: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.audited = audited


def _is_modern(message: dict[str, Any], version_header: str | None) -> bool:
    """A request of the stateless generation: it says so in its `_meta` envelope, or in
    a version header that is not a handshake one. An envelope wins over the header, so
    a handshake header with a 2026-07-28 envelope reaches the classifier's header rung
    (400, -32020) instead of being served as the older generation."""
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if isinstance(meta, dict) and PROTOCOL_VERSION_META_KEY in meta:
        return True
    return version_header is not None and version_header not in HANDSHAKE_PROTOCOL_VERSIONS


@csrf_exempt
def mcp_connection_endpoint(request: HttpRequest, connection: str) -> HttpResponse:
    """`/mcp/c/<connection>`: one MCP connection's allowed tools, under their own names,
    for clients configured per server. Same authentication (a token for /mcp works
    here), rules, audit and pipeline as `/mcp`."""
    return mcp_endpoint(request, only=connection[:60])


@csrf_exempt
def mcp_endpoint(request: HttpRequest, only: str | None = None) -> HttpResponse:  # noqa: C901 - flat guard clauses, each a documented refusal, before the MCP call
    if request.method != "POST":
        response = error_response(
            "method_not_allowed",
            "The MCP endpoint takes POST only (stateless Streamable HTTP).",
            status_code=405,
        )
        response["Allow"] = "POST"
        return response
    if not _origin_ok(request):
        return error_response(
            "forbidden_origin", "This Origin may not call the MCP endpoint.", status_code=403
        )
    try:
        resource = f"{settings.GRANTRY_BASE_URL}/mcp"
        authenticated = WorkerTokenAuthentication(resource=resource).authenticate(Request(request))
    except APIError as exc:
        return _unauthorized(exc)
    ctx = authenticated[1]
    try:
        check_size(request.META.get("CONTENT_LENGTH"))
        message = parse_json(request.body)
    except HostileInput as problem:
        reject_input(ctx, RequestMeta.from_request(request, "mcp"), "mcp.request", problem)
        if problem.code == "request_too_large":
            return error_response(problem.code, problem.message, status_code=413)
        if problem.code == "invalid_json":
            return _rpc_error(None, PARSE_ERROR, "Parse error", status=400)
        return _rpc_error(None, INVALID_REQUEST, problem.message, status=400)
    meta = RequestMeta.from_request(request, "mcp")
    if (
        not isinstance(message, dict)
        or message.get("jsonrpc") != "2.0"
        or not isinstance(message.get("method"), str)
    ):
        refused = HostileInput("Expected one JSON-RPC 2.0 request object.")
        reject_input(ctx, meta, "mcp.request", refused)
        return _rpc_error(None, INVALID_REQUEST, refused.message, status=400)
    method: str = message["method"]
    request_id = message.get("id")
    raw_params = message.get("params")
    if raw_params is not None and not isinstance(raw_params, dict):
        refused = HostileInput("JSON-RPC 'params' must be an object.")
        reject_input(ctx, meta, "mcp.request", refused)
        return _rpc_error(message.get("id"), INVALID_PARAMS, refused.message, status=400)
    params: dict[str, Any] = raw_params or {}
    version_header = request.headers.get("MCP-Protocol-Version")
    legacy = not _is_modern(message, version_header)
    if "id" not in message:
        return HttpResponse(status=202)  # notifications: nothing to act on, statelessly
    capabilities = None
    if not legacy:
        headers = {k.lower(): v for k, v in request.headers.items() if k.lower().startswith("mcp-")}
        route = classify_inbound_request(message, headers=headers)
        if isinstance(route, InboundLadderRejection):
            reject_input(ctx, meta, "mcp.request", HostileInput(route.message))
            data = route.data
            if route.code == UNSUPPORTED_PROTOCOL_VERSION and isinstance(data, dict):
                data = {**data, "supported": list(SERVED_VERSIONS)}  # not only 2026-07-28
            return _rpc_error(request_id, route.code, route.message, data)
        capabilities = route.client_capabilities
    try:
        result = _dispatch(
            ctx, method, params, request, legacy=legacy, capabilities=capabilities, only=only
        )
    except _ProtocolError as exc:
        if not exc.audited:
            reject_input(ctx, meta, "mcp.request", HostileInput(exc.message), method=method)
        return _rpc_error(request_id, exc.code, exc.message)
    return _rpc_result(request_id, result, legacy=legacy)
