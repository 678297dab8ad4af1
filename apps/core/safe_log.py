"""Log lines that cannot be forged: control characters are escaped in everything logged.

A request path, a header or an exception message is the client's text. Written raw,
`GET /nope%0AFORGED-LINE` became a log line of its own, and ESC sequences reached the
terminal of whoever read the log. `SafeFormatter` writes every record as one line with
its control characters escaped (`\\n`, `\\x1b`, `\\u2028`, …); a traceback keeps its line
breaks, but each of its lines is indented with `  | `, so no part of it can pass for a
record of its own. Django's logging (settings.LOGGING, which Celery's workers and beat
use too: grantry/celery.py) and granian's access and server logs
(grantry/granian-logging.json, the Procfile's `--log-config`) all use it.

Standard library only: granian imports it before Django is set up."""

from __future__ import annotations

import logging
import re
from typing import Any

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
CONTINUATION = "  | "


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """`text` with every control character written as an escape: one printable line."""
    return _CONTROL.sub(_escaped, text)


def _block(text: str) -> str:
    """A traceback or stack: its own lines kept, each escaped and indented."""
    return "\n".join(CONTINUATION + escape_controls(line) for line in text.split("\n"))


class SafeFormatter(logging.Formatter):
    """`logging.Formatter`, with the record's line escaped and any traceback indented."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = escape_controls(self.formatMessage(record))
        blocks: list[Any] = []
        if record.exc_info:
            blocks.append(self.formatException(record.exc_info))
        elif record.exc_text:
            blocks.append(record.exc_text)
        if record.stack_info:
            blocks.append(self.formatStack(record.stack_info))
        return "\n".join([line, *(_block(block) for block in blocks if block)])
