"""What free text people type into names (API keys, alert rules, first and last names)
may hold: anything printable, no control characters.

A control character in a name is never what anyone means, it breaks the lines of logs,
CSV exports and syslog messages that show it, and PostgreSQL refuses NUL in text (the
request would fail as a server error). Refused with a field error, like any other rule.
"""

from __future__ import annotations

import re
from typing import Final

from authgate.exceptions import FieldError

# The rule as a regular expression, for the OpenAPI document (JSON Schema ``pattern``).
NO_CONTROL_CHARACTERS_PATTERN: Final = r"^[^\x00-\x1f\x7f]*$"
# The same for a required name: and not blank (names are stripped).
REQUIRED_NAME_PATTERN: Final = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def control_character_errors(field: str, value: str | None) -> list[FieldError]:
    """A field error when ``value`` holds a control character (C0 or DEL)."""
    if value is not None and _CONTROL_CHARACTER.search(value):
        return [
            FieldError(
                field, f"{field[:1].upper()}{field[1:]} must not contain control characters."
            )
        ]
    return []
