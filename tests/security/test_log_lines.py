"""Log injection: attacker text in a log message never starts a new line."""

from __future__ import annotations

import io
import logging

import pytest

from authgate.security.log_lines import SingleLineFormatter, escape_control_characters

FORGED_PATH = "/api/x\n2026-12-04 17:40:00,000 INFO authgate.access: 10.0.0.1 GET /admin 200"


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("/api/ping", "/api/ping"),
        ("caf\u00e9", "caf\u00e9"),
        ("a\nb", "a\\nb"),
        ("a\r\nb", "a\\r\\nb"),
        ("tab\there", "tab\\there"),
        ("\x00\x1b[31mred", "\\x00\\x1b[31mred"),
        ("del\x7f", "del\\x7f"),
        ("next\x85line", "next\\x85line"),
        ("line\u2028sep\u2029para", "line\\u2028sep\\u2029para"),
        ("bidi\u202eevil\u2066", "bidi\\u202eevil\\u2066"),
        ("back\\slash", "back\\\\slash"),
        ("typed \\n is not a newline", "typed \\\\n is not a newline"),
    ],
)
def test_escape_control_characters(text: str, escaped: str) -> None:
    """Control characters, line/paragraph separators and bidi controls become backslash
    escapes; a literal backslash is doubled so that an escape cannot be faked."""
    assert escape_control_characters(text) == escaped


def test_escaped_text_has_no_line_break_for_any_character() -> None:
    """No character at all survives escaping as something ``str.splitlines`` splits on."""
    every_character = "".join(map(chr, range(0x3000)))
    assert len(escape_control_characters(every_character).splitlines()) == 1


def formatted_lines(message: str, *args: object, exc: BaseException | None = None) -> list[str]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SingleLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.Logger("authgate.test")
    logger.addHandler(handler)
    if exc is None:
        logger.warning(message, *args)
    else:
        try:
            raise exc
        except type(exc):
            logger.exception(message, *args)
    return stream.getvalue().splitlines()


def test_formatter_keeps_a_forged_line_inside_the_record() -> None:
    """A message whose argument carries CR/LF and a fake log prefix is written as one line."""
    lines = formatted_lines("%s %s %d", "GET", FORGED_PATH, 404)
    assert len(lines) == 1
    assert "GET /api/x\\n2026-12-04 17:40:00,000 INFO authgate.access:" in lines[0]


def test_formatter_leaves_backslashes_and_json_alone() -> None:
    """Already escaped text (JSON, values escaped at the call site) is not escaped twice."""
    lines = formatted_lines("alert %s", '{"subject":"a\\nb"}')
    assert lines[0].endswith('alert {"subject":"a\\nb"}')


def test_formatter_still_appends_the_traceback() -> None:
    """Tracebacks keep their lines; only the message is escaped."""
    lines = formatted_lines("failed for %s", "x\ny", exc=ValueError("boom"))
    assert lines[0].endswith("failed for x\\ny")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"
