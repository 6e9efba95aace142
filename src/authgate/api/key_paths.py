"""``{key_id:key_ref}`` in a route path: a segment that can name an API key (a UUID, or
the deprecated numeric id), and nothing else.

So a key route never takes a fixed path beside it for a key id: ``/api/api-keys/review``
and ``POST /api/v1/api-keys/authenticate`` stay theirs whatever the registration order,
and answer 405 (not 404) for a method they do not serve.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import BeforeValidator
from starlette.convertors import Convertor, register_url_convertor

from authgate.services.key_refs import DIGITS_PATTERN, UUID_PATTERN, KeyRef, parse_key_ref

_KEY_REF_PATTERN = f"{UUID_PATTERN}|{DIGITS_PATTERN}"


class KeyRefConvertor(Convertor[str]):
    regex = _KEY_REF_PATTERN

    def convert(self, value: str) -> str:
        return value  # parsed by ``key_ref``: a number too large names no key (404)

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("key_ref", KeyRefConvertor())

# The path of one key under a keys router: ``KEY_PATH``, ``KEY_PATH + "/generate"``.
KEY_PATH = "/{key_id:key_ref}"
KeyIdPath = Annotated[
    str,
    Path(
        description="The key's UUID. Deprecated until the next release: its old numeric id.",
        pattern=f"^(?:{_KEY_REF_PATTERN})$",  # what the route matches, for the document
        examples=["6f1c3e0a-2b4d-4c8e-9a7f-0d5b1e2c3a4f"],
    ),
]


def _key_filter(value: object) -> object:
    """A key to filter by: its UUID, or (deprecated) its old numeric id."""
    if isinstance(value, bool):  # (pydantic would read true as the id 1)
        raise ValueError("not a key id: a UUID (or a numeric id, deprecated)")
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str):
        ref = parse_key_ref(value)
        if ref is None:
            raise ValueError("not a key id: a UUID (or a numeric id, deprecated)")
        return ref
    return value


KeyFilter = Annotated[KeyRef, BeforeValidator(_key_filter)]
