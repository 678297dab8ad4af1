"""Which program a stdio MCP server is: a pinned npm package, installed ahead of time.

An admin names a package and an exact version (`npx -y @scope/pkg@1.2.3`, or just
`@scope/pkg@1.2.3`); a range, a tag such as `latest`, a URL or a path is refused, so
what runs is what was reviewed. Nothing is downloaded when a server starts: the
package must already be in GRANTRY_MCP_NPM_PREFIX (`manage.py mcp_install`, or
`package_install()` from a job, runs `npm install --ignore-scripts` of that exact
version there), and the version found on disk must be the pinned one. The program
started is the package's own `bin` entry, run by `node` directly (never `npx`,
which would fetch whatever the registry says today).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

# npm's rules for a package name (validate-npm-package-name): lower case, URL-safe,
# an optional @scope, at most 214 characters.
_NAME = re.compile(r"^(?:@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*$")
# An exact semantic version, no range or tag.
_VERSION = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
MAX_ARGS = 20
MAX_ARG_LENGTH = 500


class PackageError(ValueError):
    """A package reference Grantry will not run, or one that is not installed."""


@dataclass(frozen=True)
class PackageSpec:
    """One pinned npm package and the arguments its server takes."""

    name: str
    version: str
    args: tuple[str, ...] = ()
    runtime: str = "npm"

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def command_line(self) -> str:
        """How an MCP client config would start it (shown to admins)."""
        return shlex.join(["npx", "-y", str(self), *self.args])


def _split_name_version(ref: str) -> tuple[str, str]:
    at = ref.rfind("@")
    if at <= 0:
        raise PackageError(f"{ref!r} names no version: pin one exactly, e.g. {ref or 'pkg'}@1.2.3.")
    return ref[:at], ref[at + 1 :]


NOT_NPM = ("uvx", "uv", "pip", "pipx", "python", "python3", "docker")


def _words(command: str) -> list[str]:
    """The package reference and its arguments, `npx -y` taken off."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise PackageError(f"The command cannot be read: {exc}.") from None
    if words and words[0] in NOT_NPM:
        raise PackageError(
            f"Grantry runs pinned npm packages (npx -y @scope/pkg@1.2.3); {words[0]!r} "
            "servers are not supported yet."
        )
    if words and words[0] == "npx":
        words = [w for w in words[1:] if w not in ("-y", "--yes")]
        if words and words[0].startswith("-"):
            raise PackageError(f"npx option {words[0]!r} is not supported; name the package.")
    return words


def parse_package(command: str, args: list[str] | tuple[str, ...] = ()) -> PackageSpec:
    """A PackageSpec from `npx -y @scope/pkg@1.2.3 [args…]` or `@scope/pkg@1.2.3`,
    with `args` appended; PackageError says what is wrong."""
    words = _words(command)
    if not words:
        raise PackageError("Name an npm package and its exact version, e.g. @scope/pkg@1.2.3.")
    name, version = _split_name_version(words[0])
    if len(name) > 214 or not _NAME.match(name):
        raise PackageError(f"{name!r} is not an npm package name.")
    if not _VERSION.match(version):
        raise PackageError(
            f"{version!r} is not an exact version: pin one such as 1.2.3 (no ranges, no tags)."
        )
    every = [*words[1:], *args]
    if len(every) > MAX_ARGS:
        raise PackageError(f"At most {MAX_ARGS} arguments.")
    for arg in every:
        if "\x00" in arg or len(arg) > MAX_ARG_LENGTH:
            raise PackageError(f"An argument holds a NUL or is longer than {MAX_ARG_LENGTH}.")
    return PackageSpec(name=name, version=version, args=tuple(every))


@dataclass(frozen=True)
class Installed:
    """Where an installed package's entry point is, outside and inside the sandbox."""

    spec: PackageSpec
    node_modules: Path  # GRANTRY_MCP_NPM_PREFIX/node_modules, bound read-only
    entry: Path  # the bin script, below node_modules

    def entry_inside(self, mount: str) -> str:
        return f"{mount}/{self.entry.relative_to(self.node_modules).as_posix()}"


def npm_prefix() -> Path:
    return Path(settings.GRANTRY_MCP_NPM_PREFIX)


def locate(spec: PackageSpec) -> Installed:
    """The installed package, or PackageError (not installed, another version, no bin)."""
    node_modules = npm_prefix() / "node_modules"
    root = node_modules / spec.name
    manifest_path = root / "package.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        raise PackageError(
            f"{spec} is not installed on this server. An operator installs it with "
            f"`manage.py mcp_install {spec}`."
        ) from None
    if manifest.get("version") != spec.version:
        raise PackageError(
            f"{spec.name} {manifest.get('version')!s} is installed, not the pinned {spec.version}."
        )
    entry = _bin_entry(manifest, spec.name)
    if entry is None:
        raise PackageError(f"{spec} declares no program to run (no `bin` in package.json).")
    resolved = (root / entry).resolve()
    if not resolved.is_relative_to(node_modules.resolve()) or not resolved.is_file():
        raise PackageError(f"{spec}'s program is not a file inside the package.")
    return Installed(spec=spec, node_modules=node_modules.resolve(), entry=resolved)


def _bin_entry(manifest: dict[str, object], name: str) -> str | None:
    binary = manifest.get("bin")
    if isinstance(binary, str):
        return binary
    if isinstance(binary, dict) and binary:
        short = name.rsplit("/", 1)[-1]
        chosen = binary.get(short) if short in binary else next(iter(binary.values()))
        return chosen if isinstance(chosen, str) else None
    return None


def package_install(spec: PackageSpec, *, offline: bool = False, timeout: float = 600) -> Installed:
    """Install exactly `spec` into GRANTRY_MCP_NPM_PREFIX with npm (lifecycle scripts
    off: installing must not run the package's code). `offline` installs from npm's
    cache only. Raises PackageError with npm's last words when it fails."""
    prefix = npm_prefix()
    prefix.mkdir(parents=True, exist_ok=True)
    command = [
        "npm",
        "install",
        "--prefix",
        str(prefix),
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        "--save-exact",
        "--loglevel=error",
        *(["--offline"] if offline else []),
        str(spec),
    ]
    try:
        done = subprocess.run(  # noqa: S603 - a fixed program; the spec was validated above
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PackageError(f"npm could not install {spec}: {type(exc).__name__}.") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise PackageError(f"npm could not install {spec}: {' '.join(tail)[:500]}")
    return locate(spec)
