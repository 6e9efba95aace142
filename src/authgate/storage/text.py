"""What the database can hold."""

from __future__ import annotations


def storable_text(value: str) -> bool:
    """Whether a database can hold ``value``: PostgreSQL's text types refuse NUL (U+0000)
    with an error. Such a value matches no stored row, so lookups answer "none" without
    asking (a NUL in a typed login must be a wrong login, not a server error)."""
    return "\x00" not in value
