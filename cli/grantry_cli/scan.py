"""`grantry scan`: walk the places agents keep keys, read each file, report the keys.

Bad input never stops a scan: a file that does not parse, a binary file, a file over
`MAX_FILE_BYTES`, a symlink loop or a directory that cannot be read each become a
`Problem` with a clear message, and the scan goes on with the next file.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path

from grantry_cli import clients, readers
from grantry_cli.detect import Secret, detect

MAX_FILE_BYTES = 20 * 1024 * 1024  # ~/.claude.json keeps history and can reach megabytes
BINARY_SNIFF = 8192
MAX_DEPTH = 8
SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        "node_modules",
        ".venv",
        "venv",
        "__pycache__",
        ".tox",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        "site-packages",
        ".cache",
        ".npm",
        ".cargo",
        ".rustup",
    }
)


@dataclass(frozen=True)
class Finding:
    file: str
    location: str
    line: int | None
    client: str
    name: str
    server: str
    program: str
    secret: Secret = field(repr=False)

    def as_json(self) -> dict[str, object]:
        """The inventory record: never the secret."""
        return {
            "fingerprint": self.secret.fingerprint,
            "provider": self.secret.provider,
            "kind": self.secret.kind,
            "label": self.secret.label,
            "file": self.file,
            "location": self.location,
            "line": self.line,
            "client": self.client,
            "name": self.name,
            "server": self.server,
            "program": self.program,
        }


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


@dataclass
class ScanResult:
    host: str
    findings: list[Finding] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files_scanned: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "host": self.host,
            "files_scanned": self.files_scanned,
            "findings": [f.as_json() for f in self.findings],
            "problems": [p.as_json() for p in self.problems],
        }


class Scanner:
    def __init__(self, *, home: Path) -> None:
        self.home = home
        self.result = ScanResult(host=socket.gethostname())
        self._seen_files: set[tuple[int, int]] = set()

    # --- where to look -------------------------------------------------------------

    def scan_defaults(self, cwd: Path) -> ScanResult:
        """The per-user locations of every client, then the current directory."""
        for place in clients.home_locations(self.home):
            if os.path.lexists(place):
                self.scan_file(place, clients.client_for_any(place))
        self.scan_tree(cwd)
        return self.result

    def scan_paths(self, paths: list[Path]) -> ScanResult:
        for path in paths:
            if not os.path.lexists(path):
                self._problem(path, "no such file or directory")
            elif path.is_dir():
                self.scan_tree(path)
            else:
                self.scan_file(path, clients.client_for_any(path))
        return self.result

    def scan_tree(self, root: Path) -> None:
        """Known config files under `root`. Directory symlinks are followed; one that
        points back at a folder above it (a loop) is reported. A folder reached a second
        time by another name is walked again (its name may be what says which client it
        belongs to), but no file is read twice (`_read`)."""
        stack: list[tuple[Path, int, frozenset[tuple[int, int]]]] = [(root, 0, frozenset())]
        while stack:
            directory, depth, above = stack.pop()
            try:
                info = directory.stat()
            except OSError as exc:
                self._problem(directory, _why(exc))
                continue
            here = (info.st_dev, info.st_ino)
            if here in above:
                self._problem(directory, "symlink loop (it leads back to a folder above): skipped")
                continue
            if os.path.exists(directory / "pyvenv.cfg"):  # a virtualenv: code, not config
                continue
            for path, is_dir in self._entries(directory):
                if is_dir:
                    if path.name not in SKIP_DIRS and depth < MAX_DEPTH:
                        stack.append((path, depth + 1, above | {here}))
                    continue
                client = clients.client_for(path)
                if client is not None:
                    self.scan_file(path, client)
                elif path.is_symlink() and not os.path.exists(path):
                    self._check_link(path)

    def _entries(self, directory: Path) -> list[tuple[Path, bool]]:
        """(path, is a directory) for each entry, sorted; unreadable ones are reported."""
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            self._problem(directory, f"cannot read this directory: {_why(exc)}")
            return []
        found = []
        for entry in entries:
            try:
                found.append((Path(entry.path), entry.is_dir()))
            except OSError as exc:
                self._problem(Path(entry.path), _why(exc))
        return found

    # --- one file ------------------------------------------------------------------

    def scan_file(self, path: Path, client: clients.Client) -> None:
        text = self._read(path)
        if text is None:
            return
        self.result.files_scanned.append(str(path))
        try:
            values = list(readers.read(client.format, text))
        except readers.Unparsable as exc:
            self._problem(path, f"{exc}; read line by line instead")
            values = list(readers.read_lines(text))
        for value in values:
            for secret in detect(value.text, name=value.name):
                line = value.line or _line_of(text, secret.value)
                self.result.findings.append(
                    Finding(
                        file=str(path),
                        location=value.location,
                        line=line,
                        client=client.key,
                        name=value.name,
                        server=value.server,
                        program=value.program or _default_program(client),
                        secret=secret,
                    )
                )

    def _read(self, path: Path) -> str | None:
        try:
            info = os.stat(path)
        except OSError as exc:
            self._problem(path, _why(exc))
            return None
        if not stat.S_ISREG(info.st_mode):
            self._problem(path, "not a regular file: skipped")
            return None
        if (info.st_dev, info.st_ino) in self._seen_files:
            return None  # the same file through another path (a symlink)
        self._seen_files.add((info.st_dev, info.st_ino))
        if info.st_size > MAX_FILE_BYTES:
            self._problem(
                path,
                f"{_size(info.st_size)}, larger than the {_size(MAX_FILE_BYTES)} a config file "
                "can be: skipped",
            )
            return None
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            self._problem(path, _why(exc))
            return None
        if b"\0" in data[:BINARY_SNIFF]:
            self._problem(path, "a binary file, not a configuration: skipped")
            return None
        text = data.decode("utf-8", errors="replace")
        if "\ufffd" in text[:BINARY_SNIFF] and text[:BINARY_SNIFF].count("\ufffd") > 8:
            self._problem(path, "not UTF-8 text: skipped")
            return None
        return text

    def _check_link(self, path: Path) -> None:
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self._problem(path, "symlink loop: skipped")

    def _problem(self, path: Path, message: str) -> None:
        self.result.problems.append(Problem(str(path), message))


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop: skipped"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied: skipped"
    return f"{exc.strerror or exc}: skipped"


def _size(n: int) -> str:
    if n >= 1024**3:
        return f"{n / 1024**3:.1f} GB"
    return f"{n / 1024**2:.0f} MB"


def _line_of(text: str, secret: str) -> int | None:
    index = text.find(secret)
    return text.count("\n", 0, index) + 1 if index >= 0 else None


def _default_program(client: clients.Client) -> str:
    return {
        "env": "programs that load this .env file",
        "shell": "every program started from this shell",
    }.get(client.key, "")


def scan(paths: list[Path], *, home: Path | None = None, cwd: Path | None = None) -> ScanResult:
    scanner = Scanner(home=home or Path.home())
    if paths:
        return scanner.scan_paths(paths)
    return scanner.scan_defaults(cwd or Path.cwd())
