"""Ids in v12's paths. v12 parses them before anything else: text that is no id is 400
``{"error": "invalid id"}`` (handler/user.go ``pathID``, handler/api_key.go
``apiKeyID``), never a 404 as for an id that names nothing."""

from __future__ import annotations

import re
from typing import Annotated
from uuid import UUID

from fastapi import Path
from starlette.convertors import Convertor, register_url_convertor

from authgate.exceptions import ValidationFailed
from authgate.services.key_refs import DIGITS_PATTERN, KeyRef, key_ref

_DIGITS = re.compile(DIGITS_PATTERN)


class _Segment(Convertor[str]):
    """Any path segment, as v12's ``/:id``, but the fixed path beside the template,
    which stays its own: 405, not "invalid id", for a method it does not serve."""

    def convert(self, value: str) -> str:
        return value  # parsed by the endpoint: ``key_ref_of``, ``parse_uuid``

    def to_string(self, value: str) -> str:
        return value


class KeyIdSegment(_Segment):
    regex = "(?!authenticate$)[^/]+"  # POST /api-keys/authenticate: the internal check


class RoleIdSegment(_Segment):
    regex = "(?!permissions$)[^/]+"  # GET /roles/permissions


register_url_convertor("v12_key_id", KeyIdSegment())
register_url_convertor("v12_role_id", RoleIdSegment())

# A path id that is a UUID (a user's, a role's, a session's), so documented: parsed by the
# endpoint, whose 400 ``{"error": "invalid id"}`` v12's clients expect for other text.
UuidPath = Annotated[
    str,
    Path(
        json_schema_extra={"format": "uuid"},
        description="A UUID; other text is 400 invalid id.",
    ),
]


def parse_uuid(text: str, *, message: str = "invalid id") -> UUID:
    """The UUID ``text`` spells in one of the forms Go's ``uuid.Parse`` reads (v12's):
    8-4-4-4-12 hex digits, that in braces or after ``urn:uuid:``, or 32 hex digits; else
    ``ValidationFailed`` (400 ``message``). Python's ``UUID()`` reads more (hyphens
    anywhere, ``uuid:``, braces twice), which v12 answers 400."""
    if len(text) == 45 and text[:9].lower() == "urn:uuid:":
        text = text[9:]
    elif len(text) == 38 and text[0] == "{" and text[-1] == "}":
        text = text[1:-1]
    if not (_HYPHENATED.fullmatch(text) or _HEX32.fullmatch(text)):
        raise ValidationFailed(message)
    return UUID(text)


_HYPHENATED = re.compile(
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
)
_HEX32 = re.compile(r"[0-9A-Fa-f]{32}")


def user_id_of(text: str) -> str:
    """The public id of the user a path names, as stored (lower-case, hyphenated); the
    nil UUID is no id either, as in v12's ``pathID``."""
    parsed = parse_uuid(text)
    if parsed.int == 0:
        raise ValidationFailed("invalid id")
    return str(parsed)


def key_ref_of(text: str) -> KeyRef:
    """The key a path names: its UUID or, deprecated for this release, its old numeric
    id (a number too large for any key is 404, by :func:`key_ref`); anything else 400."""
    if _DIGITS.fullmatch(text):
        return key_ref(text)
    return parse_uuid(text)
