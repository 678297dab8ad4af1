import logging

from apps.core.audit_context import request_id_for_logs


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_for_logs()
        return True


class ClientErrorWithoutTraceback(logging.Filter):
    """django.request logs a 403 (PermissionDenied), 404 or 400 with the exception's
    traceback: a page of stack for an everyday answer, in the console that `make run`
    also uses as the email inbox. Below 500 the one line ("Forbidden: /path") is kept
    and the traceback dropped; a 5xx keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", 500) < 500:
            record.exc_info = None
            record.exc_text = None
        return True
