"""The API-key half of ``authgate import utmstack`` (see ``utmstack_import.py``).

A UTMStack key becomes a legacy key: its row gets a new public id (display, caches, and
the ``agk_`` key a rotation gives), ``secret_hash = legacy_digest = HMAC(pepper, key)``,
UTMStack's UUID in ``legacy_id``. The plaintext is used for that digest and nothing
else: no note, exception or log line holds it.

What a run imported of a key (owner, name, allow list, expiry) is remembered in
``legacy_imports``: a later run sets a field again only when UTMStack's value changed
since, so a change made in authgate meanwhile stands; a key deleted in authgate is not
re-created.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from authgate.security import keys
from authgate.security.networks import (
    AllowEntryError,
    IPAddress,
    IPNetwork,
    parse_allow_entry,
)
from authgate.security.principal import SCOPE_ADMIN, SCOPE_READ, SCOPE_WRITE, join_authorities
from authgate.services.api_key_views import is_legacy
from authgate.services.api_keys import NAME_MAX_LENGTH
from authgate.services.changes import Change, ChangeKind, UnitOfWork
from authgate.services.import_report import (
    DELETED_IN_AUTHGATE,
    LEFT_AS_IT_IS,
    Action,
    ImportReport,
)
from authgate.services.utmstack_ledger import Ledger
from authgate.services.utmstack_rows import UtmKey
from authgate.storage.models import ApiKey


@dataclass(frozen=True, slots=True)
class Owner:
    user_id: int
    is_admin: bool


@dataclass(frozen=True, slots=True)
class _Wanted:
    """What a UTMStack key should look like here."""

    user_id: int
    name: str
    digest: str
    allowed_networks: str
    expires_at: datetime | None
    created_at: datetime
    generated_at: datetime

    def imported(self) -> dict[str, Any]:
        """What the ledger remembers of it: the fields a later run may set again."""
        expires_at = self.expires_at.isoformat() if self.expires_at else None
        return {
            "user_id": self.user_id,
            "name": self.name,
            "allowed_networks": self.allowed_networks,
            "expires_at": expires_at,
        }


class KeyImport:
    def __init__(
        self,
        work: UnitOfWork,
        report: ImportReport,
        *,
        pepper: bytes,
        now: datetime,
        max_lifetime_days: int,
        ledger: Ledger,
        unreadable_owners: frozenset[str] = frozenset(),
    ) -> None:
        self._ledger = ledger
        # UTMStack user ids whose rows could not be read (their keys' notes say so).
        self._unreadable_owners = unreadable_owners
        self._work = work
        self._report = report
        self._pepper = pepper
        self._now = now
        self._cap = now + timedelta(days=max_lifetime_days)
        self._existing: dict[str, ApiKey] = {}
        self._digests: dict[str, str] = {}  # legacy digest -> UTMStack id
        self._live_names: set[tuple[int, str]] = set()

    async def run(
        self,
        utm_keys: list[UtmKey],
        owners: dict[int, Owner | str],
        *,
        unmapped_owner: Owner | None,
    ) -> None:
        keys = self._work.db.api_keys(self._work.session)
        for key in await keys.imported():
            self._existing[str(key.legacy_id)] = key
            if key.legacy_digest:
                self._digests[key.legacy_digest] = str(key.legacy_id)
        self._live_names = await keys.live_names()
        new_rows: list[dict[str, Any]] = []
        for utm in sorted(utm_keys, key=lambda k: k.id):
            owner = owners.get(utm.owner_id) if utm.owner_id is not None else unmapped_owner
            row = self._one(utm, owner, utm.owner_id)
            if row is not None:
                new_rows.append(row)
        if new_rows:
            await keys.insert_many(new_rows)

    def imported_keys(self) -> list[ApiKey]:
        """The keys earlier runs imported (as this run left them)."""
        return list(self._existing.values())

    def _one(
        self, utm: UtmKey, owner: Owner | str | None, owner_id: int | None
    ) -> dict[str, Any] | None:
        """A new row for ``utm``, or None (updated, unchanged or not imported)."""
        if utm.id not in self._existing and self._ledger.imported("key", utm.id):
            self._note(utm, "deleted_in_authgate", DELETED_IN_AUTHGATE)
            return None
        if owner is None or isinstance(owner, str):
            self._skip(utm, self._no_owner(owner, owner_id))
            return None
        if not keys.is_legacy_key(utm.plaintext):
            self._skip(utm, "not a 43-character UTMStack key")
            return None
        networks, notes = _allow_list(utm.allowed_ip)
        if networks is None:
            self._skip(utm, *notes)
            return None
        digest = keys.key_digest(self._pepper, utm.plaintext)
        other = self._digests.get(digest)
        if other is not None and other != utm.id:
            self._note(utm, "conflict", f"the same key was imported as UTMStack key {other}")
            return None
        self._digests[digest] = utm.id
        created = utm.created_at or self._now
        wanted = _Wanted(
            user_id=owner.user_id,
            name=_name(utm),
            digest=digest,
            allowed_networks=networks,
            expires_at=utm.expires_at,
            created_at=created,
            generated_at=utm.generated_at or created,
        )
        notes += self._expiry_notes(utm.expires_at)
        existing = self._existing.get(utm.id)
        if existing is not None:
            self._update(utm, existing, wanted, notes)
            return None
        return self._new_row(utm, wanted, notes, admin=owner.is_admin)

    def _no_owner(self, owner: str | None, owner_id: int | None) -> str:
        """Why a key has no owner here: its owner was not imported (and why), its row
        in jhi_user could not be read, it names no user, or the row has no owner."""
        if owner_id is None:
            return "no owner column (older account_id form): see --unmapped-keys-owner"
        if owner is not None:
            return f"owner {owner_id} not imported: {owner}"
        if str(owner_id) in self._unreadable_owners:
            return f"owner {owner_id} not imported: its row in jhi_user is unreadable"
        return f"owner {owner_id} is not among UTMStack's users"

    def _skip(self, utm: UtmKey, why: str) -> None:
        """Not imported now; one an earlier run imported (still in UTMStack, so not
        deleted there) is left as it is."""
        if utm.id in self._existing:
            self._note(utm, "skipped", why, LEFT_AS_IT_IS, name=self._existing[utm.id].name)
        else:
            self._note(utm, "skipped", why)

    def _new_row(
        self, utm: UtmKey, wanted: _Wanted, notes: list[str], *, admin: bool
    ) -> dict[str, Any]:
        """The row of a key not imported before. Scopes: read and write, and admin for
        an admin's key (a UTMStack key acts with all of its owner's rights)."""
        name = self._free_name(wanted, utm, notes)
        self._live_names.add((wanted.user_id, name))
        self._ledger.record("key", utm.id, wanted.imported())
        self._note(utm, "created", *notes, name=name)
        scopes = {SCOPE_READ, SCOPE_WRITE} | ({SCOPE_ADMIN} if admin else set())
        return {
            "user_id": wanted.user_id,
            "name": name,
            "key_id": keys.new_key_id(),
            "key_tail": "",
            "secret_hash": wanted.digest,
            "legacy_digest": wanted.digest,
            "legacy_id": utm.id,
            "public_id": _public_id(utm.id),
            "allowed_networks": wanted.allowed_networks,
            "scopes": join_authorities(scopes),
            "created_at": wanted.created_at,
            "generated_at": wanted.generated_at,
            "updated_at": self._now,
            "expires_at": wanted.expires_at,
        }

    def _update(self, utm: UtmKey, key: ApiKey, wanted: _Wanted, notes: list[str]) -> None:
        if key.revoked_at is not None:
            self._note(utm, "unchanged", "revoked in authgate: left revoked", name=key.name)
            return
        # What the last run imported (None: an earlier version's import, not recorded:
        # UTMStack's values are applied).
        last = self._ledger.fields("key", utm.id)
        imported = wanted.imported()
        changes: dict[str, Any] = {}
        kept: list[str] = []
        for name in ("user_id", "allowed_networks", "expires_at", "name"):
            value = getattr(wanted, name)
            if getattr(key, name) == value or (name == "name" and key.name == _renamed(utm)):
                continue
            if last is not None and name in last and last[name] == imported[name]:
                kept.append(name)  # unchanged in UTMStack: authgate's change stands
            else:
                changes[name] = value
        if "name" in changes:
            changes["name"] = self._free_name(wanted, utm, notes)
        if kept:
            notes.append(
                "changed in authgate since the last import, kept (unchanged in UTMStack): "
                + ", ".join(kept)
            )
        if key.legacy_digest != wanted.digest:  # regenerated in UTMStack since
            if not is_legacy(key):
                why = "rotated in authgate, then regenerated in UTMStack: not imported again"
                self._note(utm, "conflict", why, name=key.name)
                return
            changes |= {
                "legacy_digest": wanted.digest,
                "secret_hash": wanted.digest,
                "generated_at": wanted.generated_at,
            }
        self._ledger.record("key", utm.id, imported)
        changed = sorted(name for name, value in changes.items() if getattr(key, name) != value)
        if not changed:
            self._note(utm, "unchanged", *notes, name=key.name, kept=kept)
            return
        self._live_names.discard((key.user_id, key.name))
        for name in changed:
            setattr(key, name, changes[name])
        key.updated_at = self._now
        self._live_names.add((key.user_id, key.name))
        self._work.publish(Change(ChangeKind.API_KEY_CHANGED, key.key_id))
        shown = ["secret (regenerated in UTMStack)" if n == "secret_hash" else n for n in changed]
        shown = [n for n in shown if n not in ("legacy_digest", "generated_at")]
        changed_note = "changed: " + ", ".join(shown)
        self._note(utm, "updated", *notes, changed_note, name=key.name, kept=kept)

    def _free_name(self, wanted: _Wanted, utm: UtmKey, notes: list[str]) -> str:
        """The key's name, made unique among the owner's live keys if it is not."""
        if (wanted.user_id, wanted.name) not in self._live_names:
            return wanted.name
        notes.append("renamed: the owner has another live key of that name")
        return _renamed(utm)

    def _expiry_notes(self, expires_at: datetime | None) -> list[str]:
        if expires_at is None:
            return ["no expiry (kept; listed in the keys review)"]
        if expires_at <= self._now:
            return ["expired"]
        if expires_at > self._cap:
            return ["expiry beyond the maximum lifetime (kept; listed in the keys review)"]
        return []

    def _note(
        self,
        utm: UtmKey,
        action: Action,
        *notes: str,
        name: str | None = None,
        kept: list[str] | None = None,
    ) -> None:
        self._report.add("key", utm.id, name or _name(utm), action, *notes, kept=tuple(kept or ()))


def _name(utm: UtmKey) -> str:
    name = utm.name
    cleaned = (
        name if name.isprintable() else "".join(c if c.isprintable() else " " for c in name)
    ).strip()
    return (cleaned or f"UTMStack key {utm.id[:8]}")[:NAME_MAX_LENGTH]


def _renamed(utm: UtmKey) -> str:
    """The name a key gets when its owner has another live key of UTMStack's name."""
    return f"{_name(utm)[: NAME_MAX_LENGTH - 11]} ({utm.id[:8]})"


def _allow_list(stored: str | None) -> tuple[str | None, list[str]]:
    networks, notes = _normalised(stored)
    return networks, list(notes)


# What Java's String.trim() removes: the characters up to U+0020, nothing else (not
# U+00A0 or U+3000, which Python's str.strip() removes too). UTMStack trims with it: an
# allow list of a no-break space is not blank there (it matched no address), and must
# not become "any address" here (the diff review).
_JAVA_TRIMMED = "".join(chr(code) for code in range(0x21))


def _java_trim(text: str) -> str:
    return text.strip(_JAVA_TRIMMED)


# Many keys share an allow list (often: none), so each distinct one is parsed once.
@lru_cache(maxsize=4096)
def _normalised(stored: str | None) -> tuple[str | None, tuple[str, ...]]:
    """UTMStack's comma-joined ``allowed_ip`` in authgate's canonical form: host bits
    masked, addresses alone, IPv4-mapped IPv6 as IPv4, duplicates dropped.

    UTMStack's ``ApiKeyFilter`` admits any address only when the whole column is null
    or blank; otherwise it matches an entry of its IPv4 CIDR pattern as a network and
    compares any other entry as text with the caller's address (Tomcat's form:
    ``10.0.0.1``, ``0:0:0:0:0:0:0:1``). So an entry that is neither an address nor a
    network here (a host name, ``10.0.0.0/33``), or an IPv4 one its pattern refuses
    (leading zeros, a netmask: see ``_utmstack_never_matched``), never matched anything
    there: it is dropped, with a note, and the key works from its other entries as it
    did. A key none of whose entries is usable, separators alone included (``,``, which
    UTMStack stores for ``"allowedIp": ["", ""]``), worked from no address: it is not
    imported (None, and why), since an allow list is never made wider, least of all
    "any address". IPv6 entries, which UTMStack matched only when written in Tomcat's
    form, are admitted, with a note."""
    if not _java_trim(stored or ""):
        return "", ()  # null or blank: UTMStack's "any address"
    entries = [_java_trim(entry) for entry in (stored or "").split(",") if _java_trim(entry)]
    if not entries:
        return None, (
            "allowed_ip holds separators only: UTMStack matched no address with it, so "
            "the key worked from no address; not imported",
        )
    canonical: list[str] = []
    notes: list[str] = []
    dropped: dict[str, list[str]] = {}
    for number, entry in enumerate(entries, start=1):
        parsed = _parsed_entry(entry)
        if isinstance(parsed, str):
            dropped.setdefault(parsed, []).append(_entry_label(number, entry))
            continue
        network, masked, given = parsed
        text = str(network) if network.num_addresses > 1 else str(network[0])
        if masked.network_address != given and "host bits masked" not in notes:
            notes.append("host bits masked")
        if given.version == 6 and entry != _tomcat_form(given):
            notes.append(
                f"allowed_ip {_entry_label(number, entry)} is IPv6: UTMStack never matched it "
                "(it compared IPv6 entries as text with Tomcat's form of the caller's "
                "address, such as 0:0:0:0:0:0:0:1); authgate admits it"
            )
        if text not in canonical:
            canonical.append(text)
    labels = [label for group in dropped.values() for label in group]
    if dropped and not canonical:
        why = "; ".join(f"{', '.join(group)}: {why}" for why, group in dropped.items())
        return None, (
            f"no allowed_ip entry is an address or a network UTMStack matched ({why}): "
            "the key worked from no address; not imported",
        )
    for why, group in dropped.items():
        notes.append(
            f"allowed_ip {', '.join(group)} dropped: {why}, so UTMStack never matched it; "
            "the key works from its other entries"
        )
    if len(canonical) + len(labels) < len(entries):
        notes.append("duplicate allow-list entries dropped")
    return ",".join(canonical), tuple(notes)


_NOT_AN_ADDRESS = "neither an address nor a network"
_NOT_UTMSTACK_FORM = (
    "an IPv4 address or network in a form UTMStack's pattern refuses (leading zeros, "
    "a netmask or a padded prefix), compared there as text with the caller's address"
)
# The IPv4 networks UTMStack's ApiKeyFilter matches as networks (its CIDR_PATTERN):
# plain decimal octets and a prefix of 0 to 32, no leading zeros anywhere. [0-9], not
# \d: Java's \d is ASCII only, Python's is not.
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_UTMSTACK_CIDR = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}/(?:[0-9]|[12][0-9]|3[0-2])")
_Parsed = tuple[IPNetwork, IPNetwork, IPAddress]


def _parsed_entry(entry: str) -> _Parsed | str:
    """An entry as (authgate's network, the masked network, the address given), or why
    UTMStack never matched it."""
    if _utmstack_never_matched(entry):
        return _why_dropped(entry)
    try:
        masked = ipaddress.ip_network(entry, strict=False)
        network = parse_allow_entry(str(masked))
        given = ipaddress.ip_address(entry.partition("/")[0])
    except (ValueError, AllowEntryError):
        return _why_dropped(entry)
    return network, masked, given


def _why_dropped(entry: str) -> str:
    """Why an entry is dropped: an IPv4 address or network UTMStack could not read as
    one (``192.168.001.010``, ``010.0.0.0/8``, ``10.0.0.0/255.0.0.0``: compared as text
    with Tomcat's form of the caller's address, which has no leading zeros, they matched
    nothing), or not an address or network at all (``my-host``, ``10.0.0.0/33``)."""
    address, slash, prefix = entry.partition("/")
    octets = address.split(".")
    if len(octets) != 4 or not all(octet.isascii() and octet.isdigit() for octet in octets):
        return _NOT_AN_ADDRESS
    plain = ".".join(str(int(octet)) for octet in octets)
    if prefix.isascii() and prefix.isdigit():
        prefix = str(int(prefix))
    try:
        ipaddress.ip_network(plain + slash + prefix, strict=False)
    except ValueError:
        return _NOT_AN_ADDRESS
    return _NOT_UTMSTACK_FORM


def _utmstack_never_matched(entry: str) -> bool:
    """An IPv4 entry with a prefix that UTMStack's CIDR pattern refuses, though Python
    reads it (``10.0.0.0/08``, ``10.0.0.0/255.0.0.0``): UTMStack compared it as text
    with the caller's address, so it matched nothing; read here as a network, it would
    widen the list. (Its pattern refuses leading zeros in the address too, as Python
    does; before it, one version's pattern matched no network at all, which the import
    cannot tell from the rows.) IPv6 entries take the IPv6 path."""
    return ":" not in entry and "/" in entry and not _UTMSTACK_CIDR.fullmatch(entry)


def _tomcat_form(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The caller's address as UTMStack saw it (Tomcat's ``getRemoteAddr``): IPv6 in
    eight groups of hex without leading zeros, nothing compressed."""
    if address.version == 4:
        return str(address)
    return ":".join(group.lstrip("0") or "0" for group in address.exploded.split(":"))


def _entry_label(number: int, entry: str) -> str:
    """How a note names an entry: its number, and the entry when it is short and
    printable (never something shaped like a key)."""
    if len(entry) <= 45 and entry.isprintable() and not keys.is_legacy_key(entry):
        return f"entry {number} ({entry!r})"
    return f"entry {number}"


def _public_id(utm_id: str) -> str:
    """UTMStack's UUID as the key's public id, so ids its clients stored keep naming
    the key; a fresh UUID if UTMStack's id is not one."""
    try:
        return str(uuid.UUID(utm_id))
    except ValueError:
        return str(uuid.uuid4())
