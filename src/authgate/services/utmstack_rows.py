"""UTMStack's rows as typed records, and the column variants found (pure, no I/O).

UTMStack's schema changed over its versions: ``tfa_method`` exists in the entity but no
changeset creates it in some versions; ``api_keys`` is new in v11 (before it, a key
column on ``jhi_user``); an ``account_id`` stood where ``user_id`` is; ``generated_at``
exists only in some versions. Whatever is present is used; what is missing is reported
as a :class:`Variant`, with what the import does about it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from authgate.clock import as_utc
from authgate.storage.utmstack_source import (
    CONFIGURATION_TABLE,
    TFA_SWITCH_PARAMETER,
    SourceTables,
)

USER_REQUIRED = ("id", "login", "password_hash")
USER_OPTIONAL = {
    "email": "users without an e-mail address are skipped",
    "activated": "users are imported as activated",
    "tfa_secret": "no second factor is imported",
    # UTMStack before tfa_method e-mailed codes from a per-login secret (see
    # utmstack_import._utm_factor): no authenticator app holds it.
    "tfa_method": "a tfa_secret is taken as e-mail codes (no authenticator app holds it)",
    "fs_manager": "no user is recognised as a service account",
    "default_password": "no user is flagged to change a default password",
    "created_date": "users are dated by the import",
    "last_modified_date": "users are dated by their creation",
}
KEY_OPTIONAL = {
    "allowed_ip": "keys are imported without an allow list (any address)",
    "expires_at": "keys are imported without an expiry (flagged in the keys review)",
    "created_at": "keys are dated by the import",
    "generated_at": "the generation date is the creation date",
    "name": "keys are named after their UTMStack id",
}


@dataclass(frozen=True, slots=True)
class Variant:
    """A column or table of UTMStack that is missing (or in an older form), and what the
    import does about it."""

    subject: str
    note: str


@dataclass(frozen=True, slots=True)
class UtmUser:
    id: int
    login: str
    password_hash: str
    email: str | None
    first_name: str | None
    last_name: str | None
    image_url: str | None
    activated: bool
    lang_key: str | None
    created_by: str | None
    created_date: datetime | None
    last_modified_by: str | None
    last_modified_date: datetime | None
    tfa_secret: str | None = field(repr=False)
    tfa_method: str | None
    fs_manager: bool
    default_password: bool
    authorities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UtmKey:
    """An API key; ``plaintext`` is never printed (``repr=False``) and lives only in
    memory during the import."""

    id: str
    owner_id: int | None
    name: str
    plaintext: str = field(repr=False)
    allowed_ip: str | None
    created_at: datetime | None
    generated_at: datetime | None
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class TfaSwitch:
    """UTMStack's global two-factor switch (``utmstack.tfa.enable``). While it is off,
    UTMStack asks nobody for a second factor (v10: no e-mailed code; v11: a user's
    ``tfa_method`` is not used); on, v10 e-mails a code to every user at each login and
    v11 asks each user for their method (and has those without one enrol).

    ``enabled`` is None when it could not be read (``detail`` says why): the import then
    takes each user's factor as UTMStack's rows give it. ``flow``: which UTMStack asked
    for factors, told by its columns (``tfa_method`` is v11's)."""

    enabled: bool | None
    detail: str
    flow: str = "v11"


UNREAD_SWITCH = TfaSwitch(None, "not read")


@dataclass(frozen=True, slots=True)
class SourceIds:
    """The id of every row the source holds, readable or not: a row skipped or unreadable
    is still in UTMStack, so only an id absent here was deleted there. None: not known
    (the table or column is not in the source, or one of its rows has no id), and then
    nothing of that kind is taken as deleted.

    ``users``: ``jhi_user``'s ids; ``keys``: ``api_keys``' ids; ``user_keys``: the older
    form's keys (a ``jhi_user.api_key`` column), ``user-<id>`` for each row that has one.
    """

    users: frozenset[str] | None = None
    keys: frozenset[str] | None = None
    user_keys: frozenset[str] | None = None

    def deleted(self, kind: str, legacy_id: str) -> bool:
        """Whether UTMStack's row ``legacy_id`` is known to be gone from the source."""
        if kind == "user":
            present = self.users
        else:
            present = self.user_keys if legacy_id.startswith("user-") else self.keys
        return present is not None and legacy_id not in present


@dataclass(slots=True)
class UtmStackData:
    users: list[UtmUser]
    keys: list[UtmKey]
    variants: list[Variant]
    # Rows that could not be read (missing id, wrong type): (table, row id or index, why).
    unreadable: list[tuple[str, str, str]] = field(default_factory=list)
    tfa_switch: TfaSwitch = UNREAD_SWITCH
    ids: SourceIds = field(default_factory=SourceIds)


def parse_source(source: SourceTables) -> UtmStackData:
    """Typed users and keys, the variants found, and the rows that could not be read."""
    variants: list[Variant] = []
    unreadable: list[tuple[str, str, str]] = []
    user_columns = source.columns.get("jhi_user", frozenset())
    for column in USER_REQUIRED:
        if user_columns and column not in user_columns:
            variants.append(Variant(f"jhi_user.{column}", "missing: no user can be imported"))
    for column, effect in USER_OPTIONAL.items():
        if user_columns and column not in user_columns:
            variants.append(Variant(f"jhi_user.{column}", f"absent: {effect}"))
    authorities = _authorities(source, variants, unreadable)
    users = []
    for index, row in enumerate(source.rows.get("jhi_user", [])):
        try:
            users.append(_user(row, authorities))
        except (KeyError, TypeError, ValueError) as error:
            unreadable.append(("jhi_user", _row_label(row, index), _why(error)))
    keys = _keys(source, variants, unreadable)
    flow = "v11" if "tfa_method" in user_columns else "v10"
    return UtmStackData(
        users=users,
        keys=keys,
        variants=variants,
        unreadable=unreadable,
        tfa_switch=_tfa_switch(source, flow),
        ids=_source_ids(source),
    )


def _source_ids(source: SourceTables) -> SourceIds:
    users = source.rows.get("jhi_user", [])
    user_keys = None
    if "api_key" in source.columns.get("jhi_user", frozenset()):
        with_key = [row for row in users if row.get("api_key")]
        user_keys = _ids(with_key, prefix="user-")
    keys = _ids(source.rows["api_keys"]) if "api_keys" in source.rows else None
    return SourceIds(users=_ids(users), keys=keys, user_keys=user_keys)


def _ids(rows: list[dict[str, Any]], *, prefix: str = "") -> frozenset[str] | None:
    """The rows' ids as the import keeps them (``legacy_id``), or None if one has none."""
    ids = [row.get("id") for row in rows]
    if any(not isinstance(row_id, int | str) or isinstance(row_id, bool) for row_id in ids):
        return None
    return frozenset(f"{prefix}{row_id}" for row_id in ids)


def _tfa_switch(source: SourceTables, flow: str) -> TfaSwitch:
    """The switch as UTMStack reads it: ``Boolean.parseBoolean`` of the row's value (on
    only for "true" in any case; a null or other value is off). Unreadable (None) when
    the table or the row is missing, or rows disagree."""
    rows = source.rows.get(CONFIGURATION_TABLE)
    if rows is None:
        why = (
            f"no {CONFIGURATION_TABLE} in the source (an export made by an older command, "
            "or a database without the table)"
        )
        return TfaSwitch(None, why, flow)
    values = set()
    for row in rows:
        if row.get("conf_param_short") != TFA_SWITCH_PARAMETER:
            continue
        value = row.get("conf_param_value")
        if value is not None and not isinstance(value, str):
            return TfaSwitch(None, f"the value of {TFA_SWITCH_PARAMETER} is not text", flow)
        values.add(isinstance(value, str) and value.lower() == "true")
    if not values:
        return TfaSwitch(None, f"no {TFA_SWITCH_PARAMETER} row in {CONFIGURATION_TABLE}", flow)
    if len(values) > 1:
        return TfaSwitch(None, f"several {TFA_SWITCH_PARAMETER} rows disagree", flow)
    [enabled] = values
    return TfaSwitch(enabled, f"{TFA_SWITCH_PARAMETER} is {'on' if enabled else 'off'}", flow)


def _authorities(
    source: SourceTables, variants: list[Variant], unreadable: list[tuple[str, str, str]]
) -> dict[int, list[str]]:
    if "jhi_user_authority" not in source.rows:
        variants.append(Variant("jhi_user_authority", "absent: users get ROLE_USER only"))
        return {}
    by_user: dict[int, list[str]] = defaultdict(list)
    for row in source.rows["jhi_user_authority"]:
        user_id, name = row.get("user_id"), row.get("authority_name")
        if isinstance(user_id, int) and isinstance(name, str) and name.strip():
            if not _is_unicode(name):
                why = "authority_name " + NOT_UNICODE + ": that authority is left out"
                unreadable.append(("jhi_user_authority", f"user {user_id}", why))
                continue
            by_user[user_id].append(name.strip())
    return by_user


def _keys(
    source: SourceTables, variants: list[Variant], unreadable: list[tuple[str, str, str]]
) -> list[UtmKey]:
    keys: list[UtmKey] = []
    user_columns = source.columns.get("jhi_user", frozenset())
    if "api_key" in user_columns:  # before v11: one key per user, on the user's row
        variants.append(
            Variant(
                "jhi_user.api_key",
                "older form: each user's key is imported as a key named 'UTMStack key', "
                "without an allow list or an expiry",
            )
        )
        for row in source.rows.get("jhi_user", []):
            plaintext, user_id = row.get("api_key"), row.get("id")
            if isinstance(plaintext, str) and plaintext and isinstance(user_id, int):
                keys.append(
                    UtmKey(
                        id=f"user-{user_id}",
                        owner_id=user_id,
                        name="UTMStack key",
                        plaintext=plaintext,
                        allowed_ip=None,
                        created_at=None,
                        generated_at=None,
                        expires_at=None,
                    )
                )
    if "api_keys" not in source.rows:
        if "api_key" not in user_columns:
            variants.append(Variant("api_keys", "absent: no API key is imported"))
        return keys
    key_columns = source.columns.get("api_keys", frozenset())
    if key_columns and "user_id" not in key_columns:
        note = "absent: keys cannot be mapped to an owner"
        if "account_id" in key_columns:
            note = "absent (older form account_id): keys cannot be mapped to an owner"
        variants.append(Variant("api_keys.user_id", note + " (see --unmapped-keys-owner)"))
    for column, effect in KEY_OPTIONAL.items():
        if key_columns and column not in key_columns:
            variants.append(Variant(f"api_keys.{column}", f"absent: {effect}"))
    for index, row in enumerate(source.rows["api_keys"]):
        try:
            keys.append(_key(row))
        except (KeyError, TypeError, ValueError) as error:
            unreadable.append(("api_keys", _row_label(row, index), _why(error)))
    return keys


def _user(row: dict[str, Any], authorities: dict[int, list[str]]) -> UtmUser:
    user_id = row["id"]
    if not isinstance(user_id, int):
        raise TypeError("id is not a number")
    return UtmUser(
        id=user_id,
        login=_required_text(row, "login"),
        password_hash=_required_text(row, "password_hash"),
        email=_text(row, "email"),
        first_name=_text(row, "first_name"),
        last_name=_text(row, "last_name"),
        image_url=_text(row, "image_url"),
        # Absent column (older versions): activated, as documented; present, a boolean.
        activated=_flag(row, "activated") if "activated" in row else True,
        lang_key=_text(row, "lang_key"),
        created_by=_text(row, "created_by"),
        created_date=_instant(row, "created_date"),
        last_modified_by=_text(row, "last_modified_by"),
        last_modified_date=_instant(row, "last_modified_date"),
        tfa_secret=_text(row, "tfa_secret"),
        tfa_method=_text(row, "tfa_method"),
        fs_manager=_flag(row, "fs_manager", null=False),
        default_password=_flag(row, "default_password", null=False),
        authorities=tuple(sorted(set(authorities.get(user_id, ())))),
    )


def _key(row: dict[str, Any]) -> UtmKey:
    key_id = _required_text(row, "id")
    owner = row.get("user_id")
    if owner is not None and (not isinstance(owner, int) or isinstance(owner, bool)):
        raise TypeError("user_id is not a number")
    return UtmKey(
        id=key_id,
        owner_id=owner,
        name=_text(row, "name") or f"UTMStack key {key_id[:8]}",
        plaintext=_required_text(row, "api_key"),
        # As stored: what is blank is decided as UTMStack decides it (utmstack_keys).
        allowed_ip=_raw_text(row, "allowed_ip"),
        created_at=_instant(row, "created_at"),
        generated_at=_instant(row, "generated_at"),
        expires_at=_instant(row, "expires_at"),
    )


def _required_text(row: dict[str, Any], column: str) -> str:
    value = row[column]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{column} is empty or not text")
    if not _is_unicode(value):
        raise ValueError(f"{column} {NOT_UNICODE}")
    return value


# A value of the wrong type makes the row unreadable (reported, skipped): it is never
# guessed, least of all in the permissive direction (a "false" string taken as active, a
# number for an expiry taken as none, a list for an allow list taken as no allow list).


def _text(row: dict[str, Any], column: str) -> str | None:
    value = _raw_text(row, column)
    return (value.strip() or None) if value is not None else None


def _raw_text(row: dict[str, Any], column: str) -> str | None:
    value = row.get(column)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{column} is not text")
    if not _is_unicode(value):
        raise ValueError(f"{column} {NOT_UNICODE}")
    return value


# A JSON export may escape a lone surrogate (``\udcff``): Python reads it, but no database
# (nor UTF-8 output) can hold it, and PostgreSQL never exports one.
NOT_UNICODE = "holds text that is not valid Unicode (a lone surrogate)"


def _is_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _flag(row: dict[str, Any], column: str, *, null: bool | None = None) -> bool:
    """A boolean column; ``null``: what a null means (None: a null is unreadable)."""
    value = row.get(column)
    if value is None and null is not None:
        return null
    if not isinstance(value, bool):
        raise TypeError(f"{column} is not true or false")
    return value


def _instant(row: dict[str, Any], column: str) -> datetime | None:
    """PostgreSQL's JSON form of a timestamp; one without a zone is UTC (UTMStack's
    ``timestamp without time zone`` columns hold UTC)."""
    value = row.get(column)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{column} is not a timestamp in ISO 8601 form")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{column} is not a timestamp in ISO 8601 form") from None
    try:
        return as_utc(parsed)
    except ValueError as error:
        raise ValueError(f"{column}: {error}") from None


def _row_label(row: Any, index: int) -> str:
    """How a report names an unreadable row: its id if it has a printable one."""
    row_id = row.get("id") if isinstance(row, dict) else None
    if isinstance(row_id, int | str) and str(row_id).isprintable() and len(str(row_id)) <= 64:
        return str(row_id)
    return f"row {index + 1}"


def _why(error: Exception) -> str:
    # Only the column named by our own messages, never a value from the row.
    if isinstance(error, KeyError):
        return f"missing column {error.args[0]}"
    return str(error) if isinstance(error, ValueError | TypeError) else "unreadable"
