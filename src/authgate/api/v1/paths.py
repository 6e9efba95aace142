"""Ids in v12's paths. v12 parses them before anything else: text that is no id is 400
``{"error": "invalid id"}`` (handler/user.go ``pathID``, handler/api_key.go
``apiKeyID``), never a 404 as for an id that names nothing."""

from __future__ import annotations

import re
from uuid import UUID

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


def parse_uuid(text: str, *, message: str = "invalid id") -> UUID:
    """The UUID ``text`` spells (in any form Python reads, as Go's ``uuid.Parse``:
    hyphens or not, braces, ``urn:uuid:``), or ``ValidationFailed`` (400 ``message``)."""
    try:
        return UUID(text)
    except ValueError:
        raise ValidationFailed(message) from None


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
