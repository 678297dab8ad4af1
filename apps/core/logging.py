import logging

from apps.core.audit_context import request_id_for_logs


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_for_logs()
        return True
