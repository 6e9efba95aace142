"""How a person names an API key: by its public UUID, or (deprecated, for one release)
by the bigint id the API showed before keys had UUIDs.

The two forms cannot be confused: a UUID is only its canonical 8-4-4-4-12 hexadecimal
form (always with hyphens), an old id only ASCII digits, so no text is both.
"""

from __future__ import annotations

import re
from uuid import UUID

from authgate.exceptions import NotFound
from authgate.reasons import Reason

# UUID: the key's public id; int: its bigint primary key (paths of the previous release).
KeyRef = UUID | int

UUID_PATTERN = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
DIGITS_PATTERN = "[0-9]+"
_UUID = re.compile(UUID_PATTERN)
_DIGITS = re.compile("[0-9]{1,19}")
_MAX_KEY_PK = 2**63 - 1  # a bigint: anything larger would fail in the database


def parse_key_ref(text: str) -> KeyRef | None:
    """The key ``text`` names, or None when it is neither form (an unknown key, then)."""
    if _UUID.fullmatch(text):
        return UUID(text)
    if _DIGITS.fullmatch(text):
        key_pk = int(text)
        return key_pk if 1 <= key_pk <= _MAX_KEY_PK else None
    return None


def key_ref(text: str) -> KeyRef:
    """:func:`parse_key_ref`, answering "not found" for text that names no key."""
    ref = parse_key_ref(text)
    if ref is None:
        raise NotFound("API key not found", reason=Reason.API_KEY_NOT_FOUND)
    return ref
