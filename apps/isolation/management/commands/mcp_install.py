"""`manage.py mcp_install @scope/pkg@1.2.3 [...]`: install pinned npm packages for stdio
MCP servers into GRANTRY_MCP_NPM_PREFIX (npm, lifecycle scripts off). An operator runs
it where the web and worker processes run; Grantry never downloads when a server starts."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.isolation.packages import PackageError, package_install, parse_package


class Command(BaseCommand):
    help = "Install pinned npm packages of stdio MCP servers (exact versions only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "packages", nargs="+", help="e.g. @modelcontextprotocol/server-github@2025.4.8"
        )
        parser.add_argument("--offline", action="store_true", help="Install from npm's cache only.")

    def handle(self, *args: Any, **options: Any) -> None:
        for reference in options["packages"]:
            try:
                installed = package_install(parse_package(reference), offline=options["offline"])
            except PackageError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"Installed {installed.spec}: {installed.entry}")
