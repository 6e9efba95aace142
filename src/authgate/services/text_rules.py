"""What free text people type into names (API keys, alert rules, service credentials,
first and last names) may hold: anything printable, no control characters.

A control character in a name is never what anyone means, it breaks the lines of logs,
CSV exports and syslog messages that show it, and PostgreSQL refuses NUL in text (the
request would fail as a server error). The Unicode line separators break lines too, and
the bidirectional embeddings, overrides and isolates make a name display as other text
(``admin\u202e...`` read backwards) in the Settings UI, the CLI and exported files.
Refused with a field error, like any other rule; the audit trail replaces the same characters
(``audit.events.printable``).
"""

from __future__ import annotations

import re
from typing import Final

from authgate.exceptions import FieldError

# C0, DEL and C1; the line and paragraph separators; the bidirectional embeddings,
# overrides and isolates, as a character class. Not the direction marks (LRM, RLM, ALM):
# they reorder nothing and are common in names copied from mixed-direction text (a stored
# or imported name holding one would block every later update of its record).
_REFUSED: Final = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
# The rule as a regular expression, for the OpenAPI document (JSON Schema ``pattern``).
NO_CONTROL_CHARACTERS_PATTERN: Final = rf"^[^{_REFUSED}]*$"
# The same for a required name: and not blank (names are stripped).
REQUIRED_NAME_PATTERN: Final = rf"^[^{_REFUSED}]*[^\s{_REFUSED}][^{_REFUSED}]*$"
_CONTROL_CHARACTER = re.compile(f"[{_REFUSED}]")


def control_character_errors(field: str, value: str | None) -> list[FieldError]:
    """A field error when ``value`` holds a control character (C0, DEL, C1), a line
    separator or a bidirectional embedding, override or isolate."""
    if value is not None and _CONTROL_CHARACTER.search(value):
        return [
            FieldError(
                field, f"{field[:1].upper()}{field[1:]} must not contain control characters."
            )
        ]
    return []
