"""A restore drill: back up Grantry's database, restore it into a new database, and
verify every audit hash chain of the restored copy (docs/operations.md, "Backups").

    .venv/bin/python scripts/restore_drill.py [--dump FILE] [--keep]

Reads DATABASE_URL (the database to back up; PostgreSQL's client tools must be
installed: pg_dump, pg_restore, createdb, dropdb). Steps, each printed as it runs:

1. `pg_dump --format=custom` of DATABASE_URL into FILE (default: a temporary file);
2. `createdb` a new database next to it (`<name>_drill_<timestamp>`) and
   `pg_restore --no-owner --exit-on-error` the dump into it;
3. `manage.py audit_verify` against the restored database: every chain must verify;
4. drop the drill database (kept with --keep, and its URL printed, to inspect it).

Exits 0 when the restored copy verifies, 1 when a chain is broken (the event is
named), 2 when a step fails. Nothing is written to the source database.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent


def step(title: str) -> None:
    print(f"==> {title}", flush=True)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def run(argv: list[str], **kwargs: object) -> None:
    done = subprocess.run(argv, check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        print(f"FAILED: {argv[0]} exited with {done.returncode}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump", type=Path, help="where to write the dump (kept)")
    parser.add_argument("--keep", action="store_true", help="keep the restored database")
    args = parser.parse_args(argv)
    source = os.environ.get("DATABASE_URL", "")
    if not source.startswith(("postgres://", "postgresql://")):
        print("Set DATABASE_URL to the PostgreSQL database to back up.", file=sys.stderr)
        return 2
    name = urlsplit(source).path.lstrip("/")
    drill_name = f"{name}_drill_{int(time.time())}"
    drill_url = with_database(source, drill_name)
    maintenance = with_database(source, "postgres")
    with tempfile.TemporaryDirectory() as tmp:
        dump = args.dump or Path(tmp) / "grantry.dump"
        step(f"pg_dump {name} -> {dump}")
        run(["pg_dump", "--format=custom", f"--file={dump}", f"--dbname={source}"])
        step(f"createdb {drill_name}; pg_restore")
        run(["createdb", f"--maintenance-db={maintenance}", drill_name])
        try:
            run(["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={drill_url}", str(dump)])
            step("manage.py audit_verify on the restored copy")
            env = {**os.environ, "DATABASE_URL": drill_url}
            verified = subprocess.run(
                [sys.executable, "manage.py", "audit_verify"], cwd=ROOT, env=env, check=False
            )
        finally:
            if args.keep:
                print(f"kept: {drill_url}")
            else:
                step(f"dropdb {drill_name}")
                run(["dropdb", f"--maintenance-db={maintenance}", "--if-exists", drill_name])
    if verified.returncode != 0:
        print("RESTORE DRILL FAILED: the restored copy's audit chains do not verify.")
        return 1
    print("RESTORE DRILL PASSED: the restored copy's audit chains verify.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
