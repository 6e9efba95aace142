"""One log record, one line: control characters in logged text are escaped.

Request paths, user agents and typed logins are chosen by whoever sends the request.
Written raw, a ``%0a`` in a path would end the access line and start a forged one
(``2026-12-04 17:40:00,000 INFO authgate.access: ...``) that a reader or a log
shipper takes for authgate's own.

* :func:`escape_control_characters` is for such values where they are logged: every
  character that can break or disguise a line becomes a visible backslash escape, and
  a backslash itself is doubled, so the escaped text reads back unambiguously.
* :class:`SingleLineFormatter` is the server's safety net: it escapes the control
  characters of every message it formats (backslashes are left alone, so JSON and
  text escaped above stay as they are). Tracebacks, which span lines by nature, are
  appended after the message unchanged.
"""

from __future__ import annotations

import logging
from typing import Final


def _control_escapes() -> dict[int, str]:
    table = {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}
    # C0 controls, DEL and C1 controls (NEL, U+0085, ends a line for some readers).
    for code in (*range(0x20), *range(0x7F, 0xA0)):
        table.setdefault(code, f"\\x{code:02x}")
    # Unicode line and paragraph separators, and the bidirectional controls that can
    # make a line display as something other than what it holds.
    for code in (0x2028, 0x2029, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)):
        table[code] = f"\\u{code:04x}"
    return table


_CONTROL_ESCAPES: Final = _control_escapes()
_ALL_ESCAPES: Final = {**_CONTROL_ESCAPES, ord("\\"): "\\\\"}


def escape_control_characters(text: str) -> str:
    """``text`` with control characters and line/bidi separators written as backslash
    escapes (``\\n``, ``\\x1b``, ``\\u2028``) and backslashes doubled, so it stays on
    one line and reads as what it is. Printable text comes back as it is."""
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text  # the common case, checked at C speed
    return text.translate(_ALL_ESCAPES)


class SingleLineFormatter(logging.Formatter):
    """A formatter whose log messages never span lines, whatever their arguments hold."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        # ``format`` sets ``record.message`` (the message with its arguments) just before
        # calling this, so the escaped text is exactly what the line shows.
        message = record.message
        if not (message.isascii() and message.isprintable()):
            record.message = message.translate(_CONTROL_ESCAPES)
        return super().formatMessage(record)
