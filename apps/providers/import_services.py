"""The OpenAPI import as a background job (`OpenAPIImport`): start, choose, run, save.

The web request only stores the document (or its URL) and the admin's choice, and
enqueues `providers.run_openapi_import`. The task claims the job, reads the document
in the bounded child process (`openapi.document`) with no transaction open, and writes
its progress and result in short statements, so the dashboard and the API can poll it.
Saving goes through `services.custom_actions_import()`, all or none, audited as before."""

from __future__ import annotations

import hashlib
import logging
import zlib
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.core.tasks import enqueue_on_commit
from apps.providers.models import (
    IMPORT_WORKING,
    CustomAction,
    CustomProvider,
    ImportStatus,
    OpenAPIImport,
)
from apps.providers.openapi.document import (
    OpenAPIImportError,
    check_size,
    fetch_document,
    max_operations,
    read_drafts,
    read_index,
    time_limit,
)
from apps.providers.openapi.reading import select
from apps.providers.services import IMPORT_FIELDS, ImportFailed, custom_actions_import

KEEP_FOR = timedelta(days=1)
logger = logging.getLogger(__name__)


def _enqueue(job: OpenAPIImport) -> None:
    enqueue_on_commit("providers.run_openapi_import", job.pk)


def _progress(job: OpenAPIImport, **fields: Any) -> None:
    OpenAPIImport.objects.filter(pk=job.pk).update(**fields, updated_at=timezone.now())
    for name, value in fields.items():
        setattr(job, name, value)


@transaction.atomic
def openapi_import_start(
    *,
    provider: CustomProvider,
    actor: Any,
    content: bytes | None = None,
    file_name: str = "",
    url: str = "",
    selection: dict[str, Any] | None = None,
    auto_import: bool = False,
    edits: dict[str, dict[str, Any]] | None = None,
) -> OpenAPIImport:
    """Store a document (uploaded `content`, or a `url` the task fetches) and queue its
    reading. With a `selection` the chosen operations are drafted right after; with
    `auto_import` they are also saved (the API's one-shot import)."""
    if content is not None:
        check_size(content)
    job = OpenAPIImport.objects.create(
        organization=provider.organization,
        provider=provider,
        created_by=actor,
        origin={"file": file_name[:200]} if content is not None else {"url": url[:300]},
        document=zlib.compress(content) if content is not None else b"",
        sha256=hashlib.sha256(content).hexdigest() if content is not None else "",
        selection=selection or {},
        auto_import=auto_import,
        edits=edits or {},
    )
    _enqueue(job)
    return job


def chosen_keys_of(index: list[dict[str, Any]], selection: dict[str, Any]) -> list[str]:
    """The keys a selection picks from an index, importable ones only; refuses a choice
    of none, or of more than max_operations()."""
    matched = [op for op in select(index, **_criteria(selection)) if not op["problem"]]
    if not matched:
        raise ValidationError("No importable operation matches this choice.")
    if len(matched) > max_operations():
        raise ValidationError(
            f"{len(matched)} operations match; at most {max_operations()} can be imported at "
            "once. Narrow the choice (a tag, a path prefix, a method or a search)."
        )
    return [op["key"] for op in matched]


def _criteria(selection: dict[str, Any]) -> dict[str, Any]:
    return {
        "tags": selection.get("tags") or [],
        "path_prefix": selection.get("path_prefix") or "",
        "methods": selection.get("methods") or [],
        "search": selection.get("search") or "",
        "keys": selection.get("operations") or [],
    }


@transaction.atomic
def openapi_import_choose(
    *,
    job: OpenAPIImport,
    selection: dict[str, Any],
    auto_import: bool = False,
    edits: dict[str, dict[str, Any]] | None = None,
) -> OpenAPIImport:
    """Draft the operations a selection picks (again), in the background."""
    locked = OpenAPIImport.objects.select_for_update().get(pk=job.pk)
    if locked.status not in (ImportStatus.CHOOSING, ImportStatus.READY):
        raise ValidationError(
            "The document is still being read."
            if locked.status in IMPORT_WORKING
            else "This import is over: start another.",
            code="conflict",
        )
    keys = chosen_keys_of(locked.operations, selection)
    locked.selection, locked.chosen, locked.drafts = selection, keys, []
    locked.auto_import, locked.edits = auto_import, edits or {}
    locked.status, locked.claimed_at, locked.error = ImportStatus.RESOLVING, None, ""
    locked.progress_done, locked.progress_total = 0, len(keys)
    locked.save()
    _enqueue(locked)
    return locked


def _stale_before() -> Any:
    """A working job untouched since then has lost its worker (a reading and its
    progress touch the row at least every time_limit() seconds, twice per job)."""
    return timezone.now() - timedelta(seconds=3 * time_limit() + 60)


def _claim(job_id: int) -> OpenAPIImport | None:
    """Take a queued job (or one whose worker died: claimed longer ago than a reading
    may last); None when there is nothing to do, so a second delivery is harmless."""
    stale = _stale_before()
    with transaction.atomic():
        job = (
            OpenAPIImport.objects.select_for_update(skip_locked=True)
            .filter(pk=job_id, status__in=IMPORT_WORKING)
            .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=stale))
            .first()
        )
        if job is None:
            return None
        if job.status == ImportStatus.QUEUED:
            job.status = ImportStatus.READING
        job.claimed_at = timezone.now()
        job.save(update_fields=["status", "claimed_at", "updated_at"])
    return job


def openapi_import_run(*, job_id: int) -> OpenAPIImport | None:
    """The task's work: read the index if needed, then draft the chosen operations (and
    save them, for an auto-import). Failures end the job with the reason."""
    job = _claim(job_id)
    if job is None:
        return None
    try:
        if job.status == ImportStatus.READING:
            _read(job)
        if job.status == ImportStatus.RESOLVING:
            _resolve(job)
        if job.status == ImportStatus.READY and job.auto_import:
            _auto_import(job)
    except OpenAPIImportError as exc:
        _fail(job, str(exc))
    except ValidationError as exc:
        _fail(job, " ".join(exc.messages))
    except Exception:
        # A defect of ours, not of the document: say so now rather than leave the page
        # polling until the sweep, and keep the traceback for the logs.
        logger.exception("OpenAPI import %s failed", job.pk)
        _fail(job, "The import failed on an unexpected error; it was logged. Try again.")
    return job


def _fail(job: OpenAPIImport, message: str, details: dict[str, Any] | None = None) -> None:
    _progress(
        job,
        status=ImportStatus.FAILED,
        error=message[:2000],
        error_details=details or {},
        finished_at=timezone.now(),
    )


def _read(job: OpenAPIImport) -> None:
    if not job.document:
        content = fetch_document(job.origin.get("url", ""))
        _progress(job, document=zlib.compress(content), sha256=hashlib.sha256(content).hexdigest())
    facts = read_index(zlib.decompress(job.document))
    fields: dict[str, Any] = {
        "title": facts["title"][:200],
        "version": facts["version"][:40],
        "server_url": facts["server_url"][:500],
        "operations": facts["operations"],
    }
    importable = [op for op in facts["operations"] if not op["problem"]]
    job.operations = facts["operations"]
    if job.selection:
        keys = chosen_keys_of(job.operations, job.selection)
    elif len(importable) <= max_operations():
        keys = [op["key"] for op in importable]
    else:
        keys = []
    if keys:
        fields.update(status=ImportStatus.RESOLVING, chosen=keys, progress_total=len(keys))
    elif job.auto_import:
        raise ValidationError(
            f"The document has {len(importable)} importable operations; choose at most "
            f"{max_operations()} (operations, tags, path_prefix, methods or search)."
        )
    else:
        fields.update(status=ImportStatus.CHOOSING, finished_at=timezone.now())
    _progress(job, **fields)


def _resolve(job: OpenAPIImport) -> None:
    def progress(done: int, total: int) -> None:
        _progress(job, progress_done=done, progress_total=total)

    drafts = read_drafts(zlib.decompress(job.document), list(job.chosen), on_progress=progress)
    _progress(
        job,
        status=ImportStatus.READY,
        drafts=drafts,
        progress_done=len(drafts),
        finished_at=timezone.now(),
    )


def _auto_import(job: OpenAPIImport) -> None:
    drafts = {d["key"]: d for d in job.drafts}
    keys = [k for k in job.selection.get("operations") or job.chosen if k in drafts]
    actions = [{**drafts[k], **job.edits.get(k, {})} for k in keys]
    try:
        openapi_import_save(job=job, actor=job.created_by, actions=actions)
    except ImportFailed as failed:
        key = keys[failed.index]
        problem = drafts[key].get("problem", "")
        _fail(
            job,
            f"'{key}' cannot be imported" + (f": {problem}" if problem else "."),
            {"operation": key, "errors": _messages(failed.error)},
        )


def _messages(error: ValidationError) -> dict[str, list[str]]:
    if hasattr(error, "error_dict"):
        return {k: [str(m) for m in v] for k, v in error.message_dict.items()}
    return {"": [str(m) for m in error.messages]}


def openapi_import_save(
    *, job: OpenAPIImport, actor: Any, actions: list[dict[str, Any]]
) -> list[CustomAction]:
    """Save drafted (and maybe edited) operations as actions, all or none, and close the
    job. `actions` are drafts: their `key` and `problem` are not action fields."""
    with transaction.atomic():
        locked = OpenAPIImport.objects.select_for_update().get(pk=job.pk)
        if locked.status != ImportStatus.READY:
            raise ValidationError("This import is not ready to be saved (or was saved already).")
        created = custom_actions_import(
            provider=locked.provider,
            actor=actor,
            actions=[{f: a[f] for f in IMPORT_FIELDS if f in a} for a in actions],
            source=locked.source(),
        )
        locked.status, locked.finished_at = ImportStatus.IMPORTED, timezone.now()
        locked.created_actions = [f"{locked.provider.key}.{a.name}" for a in created]
        locked.document = b""  # the actions are saved; the document is no longer needed
        locked.save()
    job.status, job.created_actions = locked.status, locked.created_actions
    return created


def openapi_import_sweep() -> tuple[int, int]:
    """Beat: end jobs whose worker died (or whose message was lost) with the reason, so
    no page polls forever; delete jobs untouched for KEEP_FOR, documents with them.
    Returns (failed, deleted)."""
    failed = OpenAPIImport.objects.filter(
        status__in=IMPORT_WORKING, updated_at__lt=_stale_before()
    ).update(
        status=ImportStatus.FAILED,
        error="The reading stopped without an answer (its worker was lost). Start again.",
        finished_at=timezone.now(),
        updated_at=timezone.now(),
    )
    deleted, _ = OpenAPIImport.objects.filter(updated_at__lt=timezone.now() - KEEP_FOR).delete()
    return failed, deleted
