"""Turn one configuration file into the values it holds, each with where it sits.

A structured file (JSON, JSON with comments, TOML) yields every string with its path
(`mcpServers.github.env.GITHUB_PERSONAL_ACCESS_TOKEN`) and the MCP server it belongs
to. Line files (.env, shell profiles, docker-compose) yield each assignment with its
line. A file that does not parse is reported and then read line by line, so a key in a
broken file is still found.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class Unparsable(ValueError):
    """The file is not valid in its format (the message says where)."""


@dataclass(frozen=True)
class Value:
    text: str
    name: str  # the key, variable or header it sits under ("" if none)
    location: str  # JSON/TOML path, or "line N"
    line: int | None
    server: str = ""  # the MCP server (or compose service) it configures
    program: str = ""  # what runs with it: "npx @modelcontextprotocol/server-github"


# Keys under which clients list their MCP servers (compose: its services).
SERVER_CONTAINERS = frozenset(
    {"mcpServers", "servers", "context_servers", "mcp_servers", "services"}
)
_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def path_text(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


PACKAGE = r"@?[\w.-]+(/[\w.-]+)*(@[\w.^~-]+)?"  # an npm package, an image, a module


def _program(server: Any) -> str:
    """What an MCP server entry runs, without any argument that could be a secret: the
    command's base name and the first argument that names a package or an image."""
    if not isinstance(server, dict):
        return ""
    if isinstance(server.get("url") or server.get("serverUrl"), str):
        return str(server.get("url") or server.get("serverUrl"))[:200].split("?")[0]
    command = server.get("command")
    args = server.get("args")
    if isinstance(command, dict):  # Zed's older form
        args = command.get("args")
        command = command.get("path")
    if not isinstance(command, str):
        image = server.get("image")
        return f"image {image}" if isinstance(image, str) else ""
    words = [command.replace("\\", "/").rsplit("/", 1)[-1]]
    for arg in args if isinstance(args, list) else []:
        names_a_package = isinstance(arg, str) and re.fullmatch(PACKAGE, arg) is not None
        if names_a_package and (arg.startswith("@") or "mcp" in arg.lower() or "/" in arg):
            words.append(arg)
            break
    return " ".join(words)[:200]


def walk(data: Any) -> Iterator[Value]:
    """Every string inside a parsed JSON/TOML document."""
    stack: list[tuple[Any, list[str | int], str, str]] = [(data, [], "", "")]
    while stack:
        node, parts, server, program = stack.pop()
        if isinstance(node, dict) and node.get("type") == "service_account":
            # A Google service-account key is one secret: hand it over whole.
            yield Value(
                json.dumps(node),
                str(parts[-1]) if parts else "",
                path_text(parts) or "(the file)",
                None,
                server,
                program,
            )
        elif isinstance(node, dict):
            for key, child in node.items():
                child_server, child_program = server, program
                if parts and parts[-1] in SERVER_CONTAINERS and isinstance(child, dict):
                    child_server, child_program = str(key), _program(child)
                stack.append((child, [*parts, str(key)], child_server, child_program))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                stack.append((child, [*parts, index], server, program))
        elif isinstance(node, str):
            name = _name_of(parts, data)
            yield Value(node, name, path_text(parts), None, server, program)


def _name_of(parts: list[str | int], root: Any) -> str:
    """The key a value sits under; for an item of an argument list, the flag before it
    (`["--api-key", "sk_…"]`)."""
    if not parts:
        return ""
    last = parts[-1]
    if isinstance(last, str):
        return last
    if last > 0:
        node = root
        for part in parts[:-1]:
            node = node[part]
        previous = node[last - 1]
        if isinstance(previous, str) and previous.startswith("-"):
            return previous
    return str(parts[-2]) if len(parts) > 1 else ""


def _position(exc: json.JSONDecodeError) -> str:
    return f"line {exc.lineno}, column {exc.colno}: {exc.msg}"


def read_json(text: str) -> Iterator[Value]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Unparsable(f"not valid JSON ({_position(exc)})") from None
    yield from walk(data)


def strip_jsonc(text: str) -> str:
    """JSON with comments and trailing commas (VS Code, Zed) as plain JSON. Strings are
    copied as they are, so `"http://…"` keeps its slashes."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            chunk = text[i : (end + 2 if end >= 0 else n)]
            out.append("\n" * chunk.count("\n"))  # keep line numbers
            i = end + 2 if end >= 0 else n
        else:
            out.append(c)
            i += 1
    return re.sub(r",(\s*[}\]])", r"\1", "".join(out))


def read_jsonc(text: str) -> Iterator[Value]:
    yield from read_json(strip_jsonc(text))


def read_toml(text: str) -> Iterator[Value]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise Unparsable(f"not valid TOML ({exc})") from None
    yield from walk(data)


_ASSIGN = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*$")
_FISH_SET = re.compile(r"^\s*set\s+(?:-[a-zA-Z]+\s+)*([A-Za-z_][A-Za-z0-9_]*)\s+(.*?)\s*$")


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return re.split(r"\s+#", raw, maxsplit=1)[0]


def read_lines(text: str, *, program: str = "") -> Iterator[Value]:
    """`.env` files and shell profiles: assignments by name, anything else as a bare line
    (where only known key formats count)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("#"):
            continue
        match = _ASSIGN.match(line) or _FISH_SET.match(line)
        if match:
            yield Value(
                _unquote(match.group(2)), match.group(1), f"line {number}", number, "", program
            )
        elif line.strip():
            yield Value(line.strip(), "", f"line {number}", number, "", program)


_YAML_KEY = re.compile(r"^(\s*)(-\s+)?([\"']?)([^\"':#]+?)\3\s*:(?:\s+(.*?))?\s*$")
_YAML_ITEM = re.compile(r"^(\s*)-\s+(.*?)\s*$")


def read_compose(text: str) -> Iterator[Value]:
    """docker-compose files, line by line: the CLI has no YAML library (no dependencies).
    It follows `services.<name>.environment` (a map or a list of KEY=value) and reports
    every other `key: value` line by its key."""
    lines = text.splitlines()
    images: dict[str, str] = {}
    for service, key, value, _n in _compose_keys(lines):
        if key == "image" and service:
            images[service] = _unquote(value)
    for service, key, value, number in _compose_keys(lines):
        program = f"docker-compose service {service}" if service else ""
        if service in images:
            program += f" (image {images[service]})"
        location = f"services.{service}.environment.{key}" if key and service else f"line {number}"
        yield Value(_unquote(value), key, location, number, service, program)


def _compose_keys(lines: list[str]) -> Iterator[tuple[str, str, str, int]]:  # noqa: C901 - an indentation walk, one branch per YAML line shape it knows
    """(service, key, value, line) for each value line; key "" for a bare line."""
    services_indent = service_indent = env_indent = -1
    service = ""
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        if services_indent >= 0 and indent <= services_indent:
            services_indent = service_indent = env_indent = -1
            service = ""
        if env_indent >= 0 and indent <= env_indent:
            env_indent = -1
        if service_indent >= 0 and indent <= service_indent and indent > services_indent:
            service = ""
        key_match = _YAML_KEY.match(line)
        if env_indent >= 0:
            item = _YAML_ITEM.match(line)
            if item and "=" in item.group(2):
                name, _, value = _unquote(item.group(2)).partition("=")
                yield service, name.strip(), value, number
                continue
            if key_match:
                yield service, key_match.group(4).strip(), key_match.group(5) or "", number
                continue
        if key_match and not key_match.group(2):
            key, value = key_match.group(4).strip(), key_match.group(5) or ""
            if key == "services" and not value:
                services_indent = indent
                continue
            if (
                services_indent >= 0
                and not value
                and (service_indent < 0 or indent == service_indent)
                and not service
            ):
                service_indent, service = indent, key
                continue
            if service and key == "environment" and not value:
                env_indent = indent
                continue
            yield service, key, value, number
            continue
        yield service, "", line.strip(), number


READERS = {
    "json": read_json,
    "jsonc": read_jsonc,
    "toml": read_toml,
    "compose": read_compose,
}


def read(fmt: str, text: str) -> Iterator[Value]:
    if fmt in READERS:
        yield from READERS[fmt](text)
    else:
        yield from read_lines(text)
