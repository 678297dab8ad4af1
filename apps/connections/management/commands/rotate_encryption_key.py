"""Re-encrypt every secret of every model under the current GRANTRY_ENCRYPTION_KEY.

    GRANTRY_ENCRYPTION_KEY=<new> manage.py rotate_encryption_key --old-key <old>
    (or GRANTRY_ENCRYPTION_OLD_KEYS=<old>[,<older>] in the environment)

Encrypted fields are found by walking every installed model, so secrets of
other apps are covered too. Each row is locked, re-read and rewritten in its
own short transaction; running the command twice is harmless. At the end it
reports, per field, the rows still NOT under the current key (they could not
be opened with any key given) and exits non-zero if there are any.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections, router, transaction

from apps.connections.keyring import KEYRING, UndecryptableSecret, encrypted_fields, extra_old_keys


class Command(BaseCommand):
    help = "Re-encrypt every stored secret under the current GRANTRY_ENCRYPTION_KEY."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--old-key",
            action="append",
            default=[],
            dest="old_keys",
            help="A previous GRANTRY_ENCRYPTION_KEY (repeatable). Defaults to "
            "GRANTRY_ENCRYPTION_OLD_KEYS.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Only report which rows are on which key."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with extra_old_keys([k for k in options["old_keys"] if k]):
            totals = self._rotate(dry_run=options["dry_run"])
        stuck = sum(t["unreadable"] for t in totals.values())
        pending = sum(t["old"] for t in totals.values()) if options["dry_run"] else 0
        for label, t in totals.items():
            self.stdout.write(
                f"{label}: {t['rows']} rows, {t['rewritten']} re-encrypted, "
                f"{t['current']} already current, {t['old']} on an old key, "
                f"{t['unreadable']} unreadable"
            )
        if stuck:
            raise CommandError(
                f"{stuck} value(s) are still on an unknown key: pass every old key with "
                "--old-key and run again."
            )
        if pending:
            self.stdout.write(f"{pending} value(s) would be re-encrypted.")
        else:
            self.stdout.write(self.style.SUCCESS("Every secret is under the current key."))

    def _rotate(self, *, dry_run: bool) -> dict[str, dict[str, int]]:
        totals: dict[str, dict[str, int]] = {}
        for model, field in encrypted_fields():
            label = f"{model._meta.label}.{field.name}"
            t = totals.setdefault(
                label, dict.fromkeys(("rows", "rewritten", "current", "old", "unreadable"), 0)
            )
            db = router.db_for_write(model)
            table, column, pk = (
                model._meta.db_table,
                str(field.column),
                str(model._meta.pk.column),
            )
            quote = connections[db].ops.quote_name
            select = f"SELECT {quote(column)} FROM {quote(table)}"  # noqa: S608 - model names, quoted
            for pk_value in model._default_manager.using(db).values_list("pk", flat=True):
                t["rows"] += 1
                with transaction.atomic(using=db), connections[db].cursor() as cursor:
                    # Raw column: the ORM would decrypt silently and hide which key it used.
                    cursor.execute(f"{select} WHERE {quote(pk)} = %s FOR UPDATE", [pk_value])
                    row = cursor.fetchone()
                    if row is None or row[0] is None:
                        continue
                    try:
                        _, source = KEYRING.decrypt_with_source(bytes(row[0]))
                    except UndecryptableSecret:
                        t["unreadable"] += 1
                        continue
                    if source == "current":
                        t["current"] += 1
                        continue
                    t["old"] += 1
                    if dry_run:
                        continue
                    value = (
                        model._default_manager.using(db)
                        .filter(pk=pk_value)
                        .values_list(field.attname, flat=True)
                        .first()
                    )
                    # update() runs the field's get_db_prep_save: encrypted under the current key.
                    model._default_manager.using(db).filter(pk=pk_value).update(
                        **{field.attname: value}
                    )
                    t["rewritten"] += 1
                    t["old"] -= 1
        return totals
