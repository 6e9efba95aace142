"""``authgate import utmstack``: UTMStack's users, roles, second factors and API keys,
so that existing passwords and keys keep working.

One run is one transaction (a dry run rolls it back: nothing is written, not even the
audit record). A run is idempotent: users and keys are found again by their UTMStack
ids (``legacy_id``), compared, and only what changed on UTMStack's side is updated.

* What the last run imported is remembered (a user's fields in its ``legacy_profile``,
  a key's in ``legacy_imports``): a field is set again only when UTMStack's value
  changed since (UTMStack wins then: it is still in use during the migration), so a
  change made in authgate meanwhile (a deactivation, a role taken away) stands. A user
  or key deleted in authgate is not re-created: ``legacy_imports`` keeps the UTMStack
  ids every run imported. One deleted in UTMStack is revoked or deactivated here
  (``utmstack_deletions``); one still there that the run skips is left as it is.

* Passwords: UTMStack's bcrypt hashes are stored as they are; the first successful
  login verifies one with the bcrypt library and replaces it with an Argon2id hash
  (``AccountService.authenticate``'s rehash). A second import never puts back a hash
  replaced so: it changes the password only when UTMStack's hash itself changed.
* Users skipped by default: ``fs_manager`` service accounts; UTMStack's ``admin`` is a
  conflict with authgate's own admin unless ``merge_admin``. Always skipped: UTMStack's
  built-in accounts (``system``, ``anonymoususer``, ``user``; reserved logins, see
  ``user_fields``), like every row whose fields authgate refuses, with the reason.
* Second factors: put in force through ``SecondFactorService.put_in_force`` (the TOTP
  secret encrypted under the second-factor key, as an enrolment stores it), so the
  user's authenticator app keeps working; UTMStack's ``EMAIL`` method becomes e-mail
  codes. The profile keeps an HMAC of what was imported, so a second import changes
  nothing, a factor changed on UTMStack's side is updated, and one the user enrolled
  or an admin reset in authgate since is never overwritten by an unchanged UTMStack.
  Rows an earlier version kept sealed in ``legacy_second_factor`` are converted (and
  the column cleared) by the next run.
* UTMStack's global two-factor switch (``utmstack.tfa.enable``): while it is off UTMStack
  asks nobody for a factor, so none is put in force (one an earlier import put there is
  removed); on, or when it cannot be read, each user's factor is imported as above.
* API keys: the plaintext is read in memory only; HMAC(pepper, key) is stored. Owners
  are mapped by UTMStack user id, allow lists normalised, expiry kept as it is (even
  beyond the policy's cap, or none: the keys review lists those), the UUID kept.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from authgate.clock import Clock
from authgate.security.passwords import is_bcrypt_hash, is_well_formed_bcrypt_hash
from authgate.security.principal import (
    KNOWN_AUTHORITIES,
    ROLE_ADMIN,
    ROLE_USER,
    KeyReference,
    join_authorities,
    parse_authorities,
)
from authgate.security.sealing import SealError, unseal
from authgate.security.second_factor import usable_totp_secret
from authgate.services.audit.events import OPERATOR, EventType
from authgate.services.audit.writer import AuditLog
from authgate.services.changes import Change, ChangeFeed, ChangeKind, UnitOfWork
from authgate.services.import_report import (
    DELETED_IN_AUTHGATE,
    LEFT_AS_IT_IS,
    Action,
    ImportReport,
    Kind,
    switch_state,
)
from authgate.services.owner_keys import audit_owner_keys
from authgate.services.second_factor import ImportedFactor, SecondFactorService
from authgate.services.user_fields import LANG_KEY_PATTERN, user_field_errors
from authgate.services.utmstack_deletions import (
    CAUSE,
    Deactivated,
    Deletions,
    merged_into_admin,
)
from authgate.services.utmstack_keys import KeyImport, Owner
from authgate.services.utmstack_ledger import Ledger
from authgate.services.utmstack_rows import UtmStackData, UtmUser
from authgate.storage.models import User

# Sealed second factors of an earlier version (``legacy_second_factor``): read to convert.
SECOND_FACTOR_PURPOSE = "utmstack second factor"
_FACTOR_DIGEST_KEY = b"authgate utmstack imported second factor v1"
FS_MANAGER_SKIPPED = "fs_manager service account (--include-fs-manager imports it)"
# The user columns an import sets from UTMStack's row (the password apart: its own digest).
IMPORTED_FIELDS = (
    "login",
    "email",
    "first_name",
    "last_name",
    "lang_key",
    "activated",
    "authorities",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportOptions:
    dry_run: bool = False
    include_fs_manager: bool = False
    merge_admin: bool = False
    # The login of the owner given to keys whose row names no user (older account_id form).
    unmapped_keys_owner: str | None = None


@dataclass(slots=True)
class _Imported:
    """A user this run imports; reported once its second factor is done."""

    utm: UtmUser
    user: User
    action: Action
    notes: list[str] = field(default_factory=list)
    # The factor digest the last import recorded (None: none, or a first import).
    previous_factor: str | None = None
    # Fields changed in authgate since the last import, kept.
    kept: tuple[str, ...] = ()


class _DryRun(Exception):
    """Rolls the unit of work back at the end of a dry run."""


class UtmStackImporter:
    def __init__(
        self,
        *,
        feed: ChangeFeed,
        clock: Clock,
        pepper: bytes,
        audit: AuditLog,
        max_key_lifetime_days: int,
        second_factor: SecondFactorService,
    ) -> None:
        self._second_factor = second_factor
        self._feed = feed
        self._clock = clock
        self._pepper = pepper
        self._audit = audit
        self._max_key_lifetime_days = max_key_lifetime_days

    async def run(self, data: UtmStackData, options: ImportOptions, *, source: str) -> ImportReport:
        """Import ``data``; the report says what was (or, dry, would be) done."""
        report = ImportReport(
            source=source,
            dry_run=options.dry_run,
            variants=list(data.variants),
            tfa_switch=data.tfa_switch,
        )
        now = self._clock()
        try:
            async with self._feed.unit_of_work() as work:
                ledger = Ledger(work, now)
                await ledger.load()
                _report_unreadable(report, data.unreadable, ledger)
                users = _UserImport(
                    work,
                    report,
                    options,
                    pepper=self._pepper,
                    now=now,
                    second_factor=self._second_factor,
                    ledger=ledger,
                    switch_off=data.tfa_switch.enabled is False,
                )
                owners = await users.run(data.users)
                unmapped = users.owner_by_login(options.unmapped_keys_owner)
                keys = KeyImport(
                    work,
                    report,
                    pepper=self._pepper,
                    now=now,
                    max_lifetime_days=self._max_key_lifetime_days,
                    ledger=ledger,
                    unreadable_owners=_unreadable_ids(data.unreadable, "jhi_user"),
                )
                await keys.run(data.keys, owners, unmapped_owner=unmapped)
                revoked, deactivated = await _carry_deletions(
                    Deletions(work, report, now=now, ids=data.ids), users, keys
                )
                ledger.save()
                if options.dry_run:
                    raise _DryRun
        except _DryRun:
            return report
        self._audit_deletions(revoked, deactivated)
        self._audit.record(
            EventType.UTMSTACK_IMPORTED,
            "success",
            actor=OPERATOR,
            details={
                "source": source,
                "counts": report.counts(),
                "emailSecondFactorsNotImported": report.email_factors_waiting,
                "unusableTotpSecondFactorsNotImported": report.totp_factors_unusable,
                "utmstackTwoFactorSwitch": switch_state(report.tfa_switch),
                "secondFactorsNotImportedSwitchOff": report.factors_switch_off,
            },
        )
        return report

    def _audit_deletions(self, revoked: list[KeyReference], deactivated: list[Deactivated]) -> None:
        """What the run carried over of UTMStack's deletions, audited as a revocation or
        a deactivation made in authgate is, with the import as the cause."""
        audit_owner_keys(self._audit, EventType.API_KEY_REVOKED, revoked, cause=CAUSE)
        for user in deactivated:
            details: dict[str, object] = {
                "user": user.login,
                "changed": ["activated"],
                "cause": CAUSE,
            }
            if user.suspended:
                details["suspendedApiKeys"] = len(user.suspended)
            self._audit.record(EventType.USER_DEACTIVATED, "success", details=details)
            audit_owner_keys(
                self._audit, EventType.API_KEY_SUSPENDED, user.suspended, cause="deactivated"
            )


async def _carry_deletions(
    deletions: Deletions, users: _UserImport, keys: KeyImport
) -> tuple[list[KeyReference], list[Deactivated]]:
    """Keys and users an earlier run imported whose rows UTMStack no longer has: keys
    revoked first (a deleted user's keys went with it), then users deactivated."""
    imported_keys = keys.imported_keys()
    if deletions.another_source(users.imported_before(), imported_keys):
        return [], []
    revoked = deletions.revoke_keys(imported_keys)
    deactivated = await deletions.deactivate_users(users.everyone())
    return revoked, deactivated


def _report_unreadable(
    report: ImportReport, unreadable: list[tuple[str, str, str]], ledger: Ledger
) -> None:
    """Rows that could not be read: skipped, and (still in UTMStack) never taken as
    deleted; one an earlier run imported is left as it is."""
    for table, label, why in unreadable:
        kind: Kind = "key" if table == "api_keys" else "user"
        notes = [f"unreadable row: {why}"]
        if table in ("jhi_user", "api_keys") and ledger.imported(kind, label):
            notes.append(LEFT_AS_IT_IS)
        report.add(kind, label, label, "skipped", *notes)


def _unreadable_ids(unreadable: list[tuple[str, str, str]], table: str) -> frozenset[str]:
    return frozenset(label for each, label, _ in unreadable if each == table)


def password_hash_digest(password_hash: str) -> str:
    """What the profile remembers of the imported hash: enough to see that UTMStack's
    hash changed, without keeping a second copy of it."""
    return hashlib.sha256(password_hash.encode()).hexdigest()


class _UserImport:
    def __init__(
        self,
        work: UnitOfWork,
        report: ImportReport,
        options: ImportOptions,
        *,
        pepper: bytes,
        now: datetime,
        second_factor: SecondFactorService,
        ledger: Ledger,
        switch_off: bool = False,
    ) -> None:
        self._second_factor = second_factor
        self._ledger = ledger
        # UTMStack's two-factor switch is off: it asked nobody for a second factor.
        self._switch_off = switch_off
        self._work = work
        self._report = report
        self._options = options
        self._pepper = pepper
        self._now = now
        self._by_legacy: dict[str, User] = {}
        self._by_login: dict[str, User] = {}
        self._by_email: dict[str, User] = {}
        self._earlier: list[User] = []

    def owner_by_login(self, login: str | None) -> Owner | None:
        user = self._by_login.get(login.strip().lower()) if login else None
        return _owner(user) if user is not None else None

    async def run(self, utm_users: list[UtmUser]) -> dict[int, Owner | str]:
        """Owners by UTMStack user id: an authgate user, or why the user was not imported."""
        users = self._work.db.users(self._work.session)
        for user in await users.all():
            self._remember(user)
        self._earlier = list(self._by_legacy.values())
        owners: dict[int, Owner | str] = {}
        imported: list[_Imported] = []
        for utm in sorted(utm_users, key=lambda u: u.id):
            outcome = self._one(utm)
            if isinstance(outcome, str):
                owners[utm.id] = outcome
            else:
                imported.append(outcome)
        created = [each.user for each in imported if each.user.id is None]
        if created:
            users.add_all(created)
            await users.flush()  # the second factor needs the user ids
        for each in imported:
            await self._import_factor(each)
            owners[each.utm.id] = _owner(each.user)
            self._ledger.record("user", str(each.utm.id))
            self._report.add(
                "user", each.utm.id, each.user.login, each.action, *each.notes, kept=each.kept
            )
        await self._convert_sealed({id(each.user) for each in imported})
        return owners

    def _remember(self, user: User) -> None:
        if user.legacy_id:
            self._by_legacy[user.legacy_id] = user
        self._by_login[user.login] = user
        self._by_email[user.email] = user

    def _one(self, utm: UtmUser) -> _Imported | str:
        """The user ``utm`` became (new ones are not added yet), or why it was not."""
        if utm.fs_manager and not self._options.include_fs_manager:
            return self._skip(utm, "skipped", FS_MANAGER_SKIPPED)
        login, email = utm.login.strip().lower(), (utm.email or "").strip().lower()
        if not email:
            return self._skip(utm, "skipped", "no e-mail address")
        problems = user_field_errors(
            login=login,
            email=email,
            first_name=utm.first_name,
            last_name=utm.last_name,
            lang_key=_lang_key(utm),
        )
        if problems:
            return self._skip(utm, "skipped", problems[0].message)
        target = self._by_legacy.get(str(utm.id))
        if target is not None:
            return (
                self._merge(utm, target) if merged_into_admin(target) else self._update(utm, target)
            )
        if self._ledger.imported("user", str(utm.id)):
            return self._skip(utm, "deleted_in_authgate", DELETED_IN_AUTHGATE)
        holder = self._by_login.get(login)
        if holder is not None:
            mergeable = holder.legacy_id is None and self._options.merge_admin
            if login == "admin" and mergeable:
                return self._merge(utm, holder)
            if login == "admin":
                why = "authgate has its own admin: --merge-admin maps UTMStack's admin onto it"
                return self._skip(utm, "conflict", why)
            return self._skip(utm, "conflict", _taken("login", holder))
        holder = self._by_email.get(email)
        if holder is not None:
            return self._skip(utm, "conflict", _taken("e-mail", holder))
        clash = self._name_clash(utm, login, email)
        if clash is not None:
            return self._skip(utm, "conflict", clash)
        return self._create(utm, login, email)

    def _name_clash(
        self,
        utm: UtmUser,
        login: str,
        email: str,
        *,
        user: User | None = None,
        new: Collection[str] = ("login", "email"),
    ) -> str | None:
        """Why ``login`` is another user's e-mail address, or ``email`` another user's
        login (None: neither). A user signs in with either, so they are one namespace
        (README, *Logins and e-mail addresses are one namespace*); UTMStack looks an
        e-mail-shaped name up by e-mail only (``DomainUserDetailsService``), so there
        such a login named the other user. ``user``: the authgate user ``utm`` was
        imported as (a re-run). A clash of a name not ``new`` in this run (an earlier
        import let it in) is this row's only if the other user came first, so that, as
        at a first import, the later UTMStack row is the conflict."""
        for name, holder, what, other in (
            ("login", self._by_email.get(login), "login", "e-mail address"),
            ("email", self._by_login.get(email), "e-mail address", "login"),
        ):
            if holder is None or holder is user:
                continue
            if user is None or name in new or _came_first(holder, utm):
                return _taken(what, holder, as_other=other)
        return None

    def everyone(self) -> list[User]:
        """Every authgate user, as this run left them so far."""
        return list(self._by_login.values())

    def imported_before(self) -> list[User]:
        """The users earlier runs imported (those with a UTMStack id at the start)."""
        return list(self._earlier)

    def _skip(self, utm: UtmUser, action: Action, why: str) -> str:
        # Still in UTMStack, so not deleted there: one imported before stays as it is.
        earlier = action in ("skipped", "conflict") and str(utm.id) in self._by_legacy
        notes = (why, LEFT_AS_IT_IS) if earlier else (why,)
        self._report.add("user", utm.id, utm.login, action, *notes)
        return why

    def _create(self, utm: UtmUser, login: str, email: str) -> _Imported:
        fields, notes = _imported_fields(utm)
        created = utm.created_date or self._now
        user = User(
            **fields,
            password_hash=utm.password_hash,
            created_at=created,
            updated_at=utm.last_modified_date or created,
            password_changed_at=None,
            legacy_id=str(utm.id),
            password_change_required=utm.default_password,
            legacy_profile=_profile(utm, None, fields),
        )
        self._remember(user)
        return _Imported(utm, user, "created", [*notes, *_flags(utm, password=True)])

    def _update(self, utm: UtmUser, user: User) -> _Imported | str:
        """UTMStack's fields that changed there since the last import; a field changed
        in authgate meanwhile (and not in UTMStack) is kept."""
        fields, notes = _imported_fields(utm)
        previous_factor = _profile_field(user, "importedSecondFactor")
        last = _last_imported(user, utm, fields)
        wanted: dict[str, Any] = {}
        kept: list[str] = []
        for name, value in fields.items():
            if getattr(user, name) == value:
                continue
            if last is not None and name in last and last[name] == value:
                kept.append(name)  # unchanged in UTMStack: authgate's change stands
            else:
                wanted[name] = value
        holder = self._by_login.get(wanted.get("login", user.login))
        if holder is not None and holder is not user:
            return self._skip(utm, "conflict", _taken("login", holder))
        holder = self._by_email.get(wanted.get("email", user.email))
        if holder is not None and holder is not user:
            return self._skip(utm, "conflict", _taken("e-mail", holder))
        login, email = wanted.get("login", user.login), wanted.get("email", user.email)
        clash = self._name_clash(utm, login, email, user=user, new=wanted.keys())
        if clash is not None:
            return self._skip(utm, "conflict", clash)
        if kept:
            notes.append(
                "changed in authgate since the last import, kept (unchanged in UTMStack): "
                + ", ".join(kept)
            )
        wanted["legacy_profile"] = _profile(utm, previous_factor, fields)
        password_changed = _imported_digest(user) != password_hash_digest(utm.password_hash)
        if password_changed:  # changed in UTMStack since the last import
            wanted["password_hash"] = utm.password_hash
            wanted["password_change_required"] = utm.default_password
            wanted["tokens_valid_after"] = self._now
        changed = sorted(name for name, value in wanted.items() if getattr(user, name) != value)
        if not changed:
            flags = [*notes, *_flags(utm, password=False)]
            return _Imported(utm, user, "unchanged", flags, previous_factor, tuple(kept))
        self._by_login.pop(user.login, None)
        self._by_email.pop(user.email, None)
        for name in changed:
            setattr(user, name, wanted[name])
        user.updated_at = self._now
        self._remember(user)
        self._work.publish(Change(ChangeKind.USER_CHANGED, str(user.id)))
        shown = [name for name in changed if not name.startswith(("legacy_", "tokens_"))]
        notes.append("changed: " + ", ".join(shown or ["UTMStack metadata"]))
        return _Imported(
            utm,
            user,
            "updated",
            [*notes, *_flags(utm, password=password_changed)],
            previous_factor,
            tuple(kept),
        )

    def _merge(self, utm: UtmUser, admin: User) -> _Imported:
        """UTMStack's admin onto authgate's: its keys and second factor; authgate's login,
        e-mail, password and roles stay."""
        previous_factor = _profile_field(admin, "importedSecondFactor")
        profile = _profile(utm, previous_factor, merged=True)
        note = "merged into authgate's admin (its login, e-mail, password and roles are kept)"
        if admin.legacy_profile == profile:
            return _Imported(utm, admin, "unchanged", [note], previous_factor)
        admin.legacy_id = str(utm.id)
        admin.legacy_profile = profile
        admin.updated_at = self._now
        self._remember(admin)
        self._work.publish(Change(ChangeKind.USER_CHANGED, str(admin.id)))
        return _Imported(utm, admin, "updated", [note], previous_factor)

    # -- second factors -------------------------------------------------------------------

    async def _import_factor(self, each: _Imported) -> None:
        """Put UTMStack's second factor in force when it is new or changed there since
        the last import, unless the user has one of their own made in authgate since."""
        utm, user = each.utm, each.user
        if self._switch_off:
            # UTMStack did not ask for it: in force here, it would be asked for.
            wanted, unusable = None, False
            if _utm_method(utm):
                self._report.factors_switch_off += 1
                each.notes.append(
                    f"second factor {_shown(_utm_method(utm))} not imported: UTMStack's "
                    "two-factor switch (utmstack.tfa.enable) is off, so UTMStack did not "
                    "ask for it"
                )
        else:
            wanted = _utm_factor(utm)
            unusable = _unusable_totp_secret(utm)
            each.notes.extend(_factor_notes(utm, wanted, unusable=unusable))
        sealed = user.legacy_second_factor
        # An earlier version's sealed copy: the import never put that one in force.
        previous = None if sealed is not None else each.previous_factor
        session = self._work.session
        in_force = await self._second_factor.factor_in_force(session, user)
        held = _digest(self._pepper, in_force)
        new = _digest(self._pepper, wanted)
        # What the profile records as imported: UTMStack's factor once it was dealt with.
        record = new
        changed = False
        if unusable:
            record = previous  # as for e-mail codes without SMTP: a later run retries
            changed = await self._leave_unusable_totp_out(each, in_force)
        elif held == new:
            if wanted is not None:
                each.notes.append(f"second factor {wanted.method} in force")
        elif previous == new:
            # Unchanged in UTMStack: a reset or an enrolment made in authgate stands.
            each.notes.append("second factor changed in authgate since the last import: kept")
        elif in_force is not None and held != previous:
            each.notes.append(
                "second factor enrolled in authgate kept (UTMStack's differs: not imported)"
            )
        elif wanted is not None and wanted.method == "EMAIL" and not self._second_factor.mails:
            # E-mail codes without SMTP would lock the user out; a later run retries.
            record = previous
            self._report.email_factors_waiting += 1
            each.notes.append(
                "second factor EMAIL not imported: e-mail codes need an SMTP server "
                "(AUTHGATE_ALERT_SMTP_HOST); import again once it is set"
            )
        else:
            await self._second_factor.put_in_force(session, user, wanted)
            changed = True
            if wanted is not None:
                each.notes.append(f"second factor {wanted.method} imported and in force")
            elif self._switch_off and _utm_method(utm):
                each.notes.append(
                    "second factor an earlier import put in force removed (UTMStack's "
                    "switch is off)"
                )
            else:
                each.notes.append("second factor removed (removed in UTMStack)")
        if record != each.previous_factor:
            profile = json.loads(user.legacy_profile or "{}")
            profile["importedSecondFactor"] = record
            user.legacy_profile = json.dumps(profile, sort_keys=True)
            changed = True
        if sealed is not None:
            user.legacy_second_factor = None
            changed = True
            each.notes.append("sealed second factor of an earlier import converted")
        if changed and each.action != "created":
            user.updated_at = self._now
            self._work.publish(Change(ChangeKind.USER_CHANGED, str(user.id)))
            if each.action == "unchanged":
                each.action = "updated"

    async def _leave_unusable_totp_out(
        self, each: _Imported, in_force: ImportedFactor | None
    ) -> bool:
        """UTMStack's TOTP secret yields no code: like e-mail codes without SMTP, it is
        not put in force (in force, it would refuse every code: the user could not sign
        in at all), and the report says so. A secret an earlier import put in force that
        yields no code is removed, so the user is as if imported now: the password
        alone, or enrolment where a second factor is required. True if it was."""
        self._report.totp_factors_unusable += 1
        each.notes.append(
            "second factor TOTP not imported: UTMStack's secret is not base32 of 112 bits "
            "or more, so no authenticator app can hold it (fix it in UTMStack and import "
            "again, or have the user enrol in authgate)"
        )
        if not _unusable_in_force(in_force):
            return False
        await self._second_factor.put_in_force(self._work.session, each.user, None)
        each.notes.append("the unusable TOTP secret an earlier import put in force removed")
        return True

    async def _convert_sealed(self, handled: set[int]) -> None:
        """Users an earlier version imported with a sealed second factor who are not in
        this run (gone from UTMStack, or skipped now): their sealed copy is the only one,
        so it is put in force, unless they enrolled one in authgate since."""
        session = self._work.session
        for user in list(self._by_login.values()):
            if user.legacy_second_factor is None or id(user) in handled:
                continue
            factor = _unsealed(self._pepper, user.legacy_second_factor)
            in_force = await self._second_factor.factor_in_force(session, user)
            if factor is not None and in_force is None:
                await self._second_factor.put_in_force(session, user, factor)
                note = f"sealed second factor {factor.method} converted and in force"
            elif factor is None:
                note = (
                    "sealed second factor unreadable (another pepper, or a TOTP secret "
                    "that is not base32 of 112 bits or more): dropped"
                )
            else:
                note = "sealed second factor dropped: one enrolled in authgate is in force"
            user.legacy_second_factor = None
            user.updated_at = self._now
            self._work.publish(Change(ChangeKind.USER_CHANGED, str(user.id)))
            source_id = user.legacy_id or str(user.id)
            self._report.add("user", source_id, user.login, "updated", note)


def _taken(what: str, holder: User, *, as_other: str | None = None) -> str:
    """Why a user is a conflict: the authgate user holding its login or e-mail (or, with
    ``as_other``, holding it as its other name: its e-mail for a login, its login for an
    e-mail). One imported from UTMStack is named by its UTMStack id: two UTMStack rows
    that differ only in case (``Jane@Example.com``, ``jane@example.com``) are one name
    here."""
    used = f"{what} already used as the {as_other} of" if as_other else f"{what} already used by"
    why = (
        "logins and e-mail addresses are one namespace (a user signs in with either)"
        if as_other
        else "authgate compares logins and e-mail addresses without case"
    )
    if holder.legacy_id is None or merged_into_admin(holder):
        named = f"{used} another authgate user"
        return f"{named}: {why}" if as_other else named
    return f"{used} UTMStack user {holder.legacy_id} ({holder.login}), imported before it: {why}"


def _came_first(holder: User, utm: UtmUser) -> bool:
    """Whether ``holder`` wins a clash of names with UTMStack's row ``utm``: authgate's
    own users do, and UTMStack's rows by id (the earlier one is imported, the later one
    is the conflict)."""
    if holder.legacy_id is None or merged_into_admin(holder):
        return True
    try:
        return int(holder.legacy_id) < utm.id
    except ValueError:
        return True


def _shown(text: str, limit: int = 20) -> str:
    """A value of UTMStack's row as a note may quote it: printable and short."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _factor_notes(utm: UtmUser, wanted: ImportedFactor | None, *, unusable: bool) -> list[str]:
    """What the report says of UTMStack's second factor besides what was done with it."""
    notes = []
    method = _utm_method(utm)
    if method and method not in ("TOTP", "EMAIL"):
        secret = "; UTMStack's row has a secret for it" if utm.tfa_secret else ""
        notes.append(
            f"second factor {_shown(method)} not imported: authgate has no such method "
            f"(it has TOTP and e-mail codes){secret}"
        )
    elif method and wanted is None and not unusable:
        notes.append(f"second factor {method} without a secret: not imported")
    if utm.tfa_secret and not utm.tfa_method:
        notes.append(
            "no tfa_method: UTMStack e-mailed codes from a per-login secret (no app holds "
            "it), so the method is e-mail codes"
        )
    return notes


def _owner(user: User) -> Owner:
    return Owner(user_id=user.id, is_admin=ROLE_ADMIN in parse_authorities(user.authorities))


def _lang_key(utm: UtmUser) -> str:
    """UTMStack's language, or English when it has none authgate accepts (a language
    is no reason to leave a user behind)."""
    lang_key = utm.lang_key or ""
    return lang_key if re.fullmatch(LANG_KEY_PATTERN, lang_key) else "en"


def _lang_key_notes(utm: UtmUser) -> list[str]:
    if utm.lang_key is None or _lang_key(utm) == utm.lang_key:
        return []
    return [f"language {_shown(utm.lang_key)!r} is not one authgate accepts: set to en"]


def _imported_fields(utm: UtmUser) -> tuple[dict[str, Any], list[str]]:
    """The user's ``IMPORTED_FIELDS`` as UTMStack's row gives them, and notes."""
    authorities, notes = _authorities(utm)
    notes += _lang_key_notes(utm)
    fields = {
        "login": utm.login.strip().lower(),
        "email": (utm.email or "").strip().lower(),
        "first_name": utm.first_name,
        "last_name": utm.last_name,
        "lang_key": _lang_key(utm),
        "activated": utm.activated,
        "authorities": authorities,
    }
    return fields, notes


def _last_imported(user: User, utm: UtmUser, fields: dict[str, Any]) -> dict[str, Any] | None:
    """The fields the last import set (None: unknown, every difference is applied).

    A user imported by an earlier version has no record of them: if UTMStack's row is
    dated as it was then (``lastModifiedDate``), it did not change since, so what
    differs was changed in authgate and is kept."""
    last = _profile_field(user, "importedFields")
    if isinstance(last, dict):
        return last
    modified = utm.last_modified_date
    unchanged = modified is not None and _profile_field(user, "lastModifiedDate") == (
        modified.isoformat()
    )
    return fields if unchanged else None


def _authorities(utm: UtmUser) -> tuple[str, list[str]]:
    """authgate's roles of ``utm`` (the ones it knows; ROLE_USER at least) and notes on
    the ones dropped (they stay in the profile)."""
    known = {name for name in utm.authorities if name in KNOWN_AUTHORITIES}
    dropped = sorted(set(utm.authorities) - KNOWN_AUTHORITIES)
    notes = []
    if dropped:
        shown = ", ".join(_shown(name, 50) for name in dropped)
        notes.append(f"authorities not known to authgate, kept in the profile only: {shown}")
    if not known:
        notes.append(
            ("no authority authgate knows" if dropped else "no authorities in UTMStack")
            + ": given ROLE_USER, authgate's least role"
        )
    return join_authorities(known or {ROLE_USER}), notes


def _profile(
    utm: UtmUser,
    factor_digest: str | None,
    fields: dict[str, Any] | None = None,
    *,
    merged: bool = False,
) -> str:
    """UTMStack's fields without a column here, as sorted JSON (so equal means same)."""
    document: dict[str, Any] = {
        "authorities": list(utm.authorities),
        "createdBy": utm.created_by,
        "imageUrl": utm.image_url,
        "importedHashDigest": password_hash_digest(utm.password_hash),
        # What the import put in force (an HMAC under the pepper, never the secret).
        "importedSecondFactor": factor_digest,
        "lastModifiedBy": utm.last_modified_by,
        "lastModifiedDate": utm.last_modified_date.isoformat() if utm.last_modified_date else None,
    }
    if fields is not None:
        # What the import set from UTMStack's row (compared with it at the next run).
        document["importedFields"] = fields
    if merged:
        document["mergedIntoAdmin"] = True
    return json.dumps(document, sort_keys=True)


def _imported_digest(user: User) -> Any:
    return _profile_field(user, "importedHashDigest")


def _profile_field(user: User, name: str) -> Any:
    try:
        document = json.loads(user.legacy_profile or "{}")
    except json.JSONDecodeError:
        return None
    return document.get(name) if isinstance(document, dict) else None


def _utm_method(utm: UtmUser) -> str:
    """UTMStack's second-factor method, upper case ("" for none).

    A secret with no method is e-mail codes: UTMStack before ``tfa_method`` (v10's
    ``UserJWTController.authorize``) writes a new secret at every login while 2FA is on
    and e-mails a code made from it; no authenticator app holds that secret, so taking
    it for TOTP would lock the user out."""
    return (utm.tfa_method or ("EMAIL" if utm.tfa_secret else "")).strip().upper()


def _utm_factor(utm: UtmUser) -> ImportedFactor | None:
    """UTMStack's second factor as authgate's: TOTP with its secret (as authenticator
    apps read it), or e-mail codes (authgate sends its own random codes: UTMStack's
    secret plays no part). None for none, and for a TOTP secret no code can be computed
    from (``_unusable_totp_secret``)."""
    method = _utm_method(utm)
    if method == "EMAIL":
        return ImportedFactor("EMAIL", None)
    secret = usable_totp_secret(utm.tfa_secret or "")
    if method == "TOTP" and secret is not None:
        return ImportedFactor("TOTP", secret)
    return None


def _unusable_totp_secret(utm: UtmUser) -> bool:
    """UTMStack's factor is TOTP with a secret that is not base32 of 112 bits or more:
    put in force, every code would be refused (and no app can hold it)."""
    secret = (utm.tfa_secret or "").strip()
    return _utm_method(utm) == "TOTP" and bool(secret) and usable_totp_secret(secret) is None


def _unusable_in_force(factor: ImportedFactor | None) -> bool:
    """A TOTP factor in force whose secret decrypts but yields no code (an import's,
    from before imports checked secrets); one that does not decrypt is not: another
    AUTHGATE_TFA_KEY is the operator's to fix, not the import's to remove."""
    secret = factor.totp_secret if factor is not None else None
    return secret is not None and usable_totp_secret(secret) is None


def _digest(pepper: bytes, factor: ImportedFactor | None) -> str | None:
    """Identifies a factor without revealing it: equal factors, equal digests."""
    if factor is None:
        return None
    message = f"{factor.method}:{factor.totp_secret or ''}".encode()
    key = hmac.new(pepper, _FACTOR_DIGEST_KEY, hashlib.sha256).digest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _unsealed(pepper: bytes, stored: str) -> ImportedFactor | None:
    """An earlier version's sealed second factor, or None when it does not open."""
    try:
        document = json.loads(stored)
        secret = document.get("secret")
        opened = unseal(pepper, SECOND_FACTOR_PURPOSE, secret) if secret else None
    except (json.JSONDecodeError, AttributeError, SealError):
        return None
    method = str(document.get("method") or "").upper()
    if method == "EMAIL":
        return ImportedFactor("EMAIL", None)
    secret = usable_totp_secret(opened) if opened else None
    return ImportedFactor("TOTP", secret) if method == "TOTP" and secret else None


def _flags(utm: UtmUser, *, password: bool) -> list[str]:
    """What an operator should know about a user, beyond what was done."""
    flags = []
    if utm.default_password:
        flags.append("default password: flagged to change it")
    if password and not is_bcrypt_hash(utm.password_hash):
        flags.append("password hash is not bcrypt: cannot log in until a password is set")
    elif password and not is_well_formed_bcrypt_hash(utm.password_hash):
        flags.append(
            "password hash is not a well-formed bcrypt hash (no password matches it in "
            "UTMStack either): cannot log in until a password is set"
        )
    if not utm.activated:
        flags.append("not activated in UTMStack")
    return flags
