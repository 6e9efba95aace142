"""What the CLI prints, made harmless to a terminal.

Bodies, messages, names and field errors come from the server, which the CLI does not
have to trust (nor a plain-http connection to it). rich drops a few control characters
(BEL, backspace, CR) but writes ESC (0x1b) and the C1 controls (0x9b is CSI on its
own) as they are: a server's text could set the terminal's title, recolour or hide
what was printed before it, or rewrite a line the user reads as authgate-client's.

* :func:`printable` replaces those characters with U+FFFD; :class:`SafeConsole` applies
  it to every string given to it, so no print site can forget it. It applies whether or
  not the output is a terminal (the CLI never told them apart, and a file written now
  is shown on a terminal later); ``-o json`` keeps the exact values (below).
* :func:`json_printable` writes the same characters as JSON escapes (``\\u009b``) in
  ``json.dumps`` output, which escapes C0 controls itself but lets DEL, C1 and the
  Unicode ones through with ``ensure_ascii=False``: the values a JSON reader gets stay
  exactly the server's, and the terminal sees no raw control.
"""

from __future__ import annotations

import re
from typing import Any, Final

from rich.console import Console
from rich.text import Text

__all__ = ["SafeConsole", "json_printable", "printable"]

# C0 controls but newline and tab, DEL, C1 controls; the Unicode line and paragraph
# separators and the bidirectional controls, which make a line show other than it reads
# (the server's log lines escape the same set).
_UNSAFE: Final = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def printable(text: str) -> str:
    """``text`` with control characters other than newline and tab, and the Unicode
    characters that reorder or split a line, replaced by U+FFFD (CRLF is a newline)."""
    return _UNSAFE.sub("\ufffd", text.replace("\r\n", "\n"))


def json_printable(text: str) -> str:
    """``json.dumps`` output with the characters :func:`printable` replaces written as
    ``\\uXXXX`` escapes instead: the same JSON values, nothing a terminal acts on
    (``json.dumps`` writes none of them outside strings)."""
    return _UNSAFE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


class SafeConsole(Console):
    """A rich console whose strings all pass through :func:`printable` (before markup:
    the console's own styles are added after, and still show). Emoji codes are left as
    typed: ``:smiley:`` in a server's value is text, not a picture."""

    def __init__(self, **options: Any) -> None:
        super().__init__(emoji=False, **options)

    def render_str(self, text: str, **options: Any) -> Text:
        return super().render_str(printable(text), **options)
