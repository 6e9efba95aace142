"""Deletions in UTMStack, carried over by ``authgate import utmstack`` (see
``utmstack_import.py``).

Deleting a key's row is UTMStack's only way to revoke it, and a user deleted there can
no longer sign in (its keys go with it: ``ON DELETE CASCADE``). So on a later run a key
an earlier run imported whose row is gone is revoked, and such a user is deactivated, as
a revocation or a deactivation made in authgate would do it (keys suspended, sessions
ended, reset link cancelled, each audited). Only what came from UTMStack (a
``legacy_id``) is looked at; a row still there but skipped now (an ``fs_manager``
without ``--include-fs-manager``, an unreadable row, a conflict) is not deleted.

A revocation is final. A deactivation is what the import set, recorded as such: if an
admin reactivates the user in authgate it stands, and if the row comes back (the wrong
source was read) the next run reactivates the user as a change made in UTMStack.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from authgate.security.principal import ROLE_ADMIN, KeyReference, parse_authorities
from authgate.services.api_key_views import is_legacy
from authgate.services.changes import Change, ChangeKind, UnitOfWork
from authgate.services.import_report import Action, ImportReport
from authgate.services.owner_keys import end_grace, suspend_owner_keys
from authgate.services.reset_keys import cancel_reset_link
from authgate.services.users import end_sessions
from authgate.services.utmstack_rows import SourceIds, Variant
from authgate.storage.models import ApiKey, User

# The audit trail's ``cause`` of what the import revokes or deactivates.
CAUSE = "utmstack_import"
# The profile's mark of a user the import deactivated because UTMStack's row was gone.
_MARK = "deletedInUtmstack"


@dataclass(slots=True)
class Deactivated:
    """A user the run deactivated, and the keys that suspended (for the audit trail)."""

    login: str
    suspended: list[KeyReference] = field(default_factory=list)


class Deletions:
    """What an earlier run imported and UTMStack no longer has, in one run's unit of work.
    The audit records are the caller's to write once the run is committed."""

    def __init__(
        self, work: UnitOfWork, report: ImportReport, *, now: datetime, ids: SourceIds
    ) -> None:
        self._work = work
        self._report = report
        self._now = now
        self._ids = ids

    def another_source(self, imported: Iterable[User], keys: Iterable[ApiKey] = ()) -> bool:
        """Whether the source holds none of the users earlier runs imported, or none of
        the live keys they imported but other keys (there is at least one): another
        UTMStack's database (a staging copy, a rebuilt one: user ids are sequential and
        repeat across installations, key ids are UUIDs and do not), or an emptied one,
        far more likely than all of them deleted. Then nothing is taken as deleted (a
        revocation is final), and the report says so."""
        ids = [
            user.legacy_id for user in imported if user.legacy_id and not merged_into_admin(user)
        ]
        keys = [key for key in keys if key.legacy_id]
        live = [str(key.legacy_id) for key in keys if key.revoked_at is None]
        source_keys = self._ids.keys or frozenset()
        if ids and all(self._ids.deleted("user", legacy_id) for legacy_id in ids):
            table, kind = "jhi_user", "users"
        elif (
            live
            and all(self._ids.deleted("key", legacy_id) for legacy_id in live)
            # ... and keys none of which an earlier run imported: another UTMStack's
            # (deleting every key, and no more, is UTMStack's revocation of them all).
            and source_keys - {str(key.legacy_id) for key in keys}
        ):
            table, kind = "api_keys", "live keys"
        else:
            return False
        self._report.variants.append(
            Variant(
                table,
                f"holds none of the {kind} earlier runs imported: deletions in UTMStack are "
                "not carried over (is this the same UTMStack?)",
            )
        )
        return True

    def revoke_keys(self, imported: Iterable[ApiKey]) -> list[KeyReference]:
        """Revoke each key whose UTMStack row is gone; the keys revoked."""
        revoked = []
        for key in imported:
            legacy_id = str(key.legacy_id)
            if not self._ids.deleted("key", legacy_id):
                continue
            if key.revoked_at is not None:
                self._note(key, "unchanged", "deleted in UTMStack; revoked already")
            elif not is_legacy(key):
                # Its secret is authgate's now, which UTMStack never held: deleting
                # UTMStack's row revoked UTMStack's secret, not this one.
                self._note(
                    key,
                    "conflict",
                    "deleted in UTMStack, but rotated in authgate since (its secret is "
                    "authgate's): left live; revoke it in authgate if it should go",
                )
            else:
                revoked.append(self._revoke(key))
        return revoked

    async def deactivate_users(self, imported: Iterable[User]) -> list[Deactivated]:
        """Deactivate each user whose UTMStack row is gone; ``imported``: every authgate
        user (the last active administrator is never deactivated)."""
        users = list(imported)
        admins = sum(1 for user in users if _active_admin(user))
        deactivated = []
        for user in users:
            if not user.legacy_id or not self._ids.deleted("user", user.legacy_id):
                continue
            if merged_into_admin(user):
                self._user_note(
                    user,
                    "unchanged",
                    "UTMStack's admin, merged into authgate's, is deleted in UTMStack: "
                    "authgate's admin is its own, left as it is",
                )
            elif _profile(user).get(_MARK):
                again = "; reactivated in authgate since: left so" if user.activated else ""
                note = f"deleted in UTMStack: deactivated by an earlier run{again}"
                self._user_note(user, "unchanged", note)
            elif _active_admin(user) and admins <= 1:
                self._user_note(
                    user,
                    "conflict",
                    "deleted in UTMStack, but authgate's last active administrator: left "
                    "active (make another administrator, then deactivate it)",
                )
            else:
                admins -= 1 if _active_admin(user) else 0
                deactivated.append(await self._deactivate(user))
        return deactivated

    def _revoke(self, key: ApiKey) -> KeyReference:
        """As ``ApiKeyService.revoke``: at once on every worker and node."""
        key.revoked_at = key.updated_at = self._now
        end_grace(key)
        self._work.publish(Change(ChangeKind.API_KEY_CHANGED, key.key_id))
        self._note(
            key,
            "deleted_in_utmstack",
            "deleted in UTMStack (its only way to revoke a key): revoked",
        )
        return KeyReference(key_pk=key.id, name=key.name, owner_id=key.user_id)

    async def _deactivate(self, user: User) -> Deactivated:
        """As a deactivation in authgate (``UsersService.update_user``): keys suspended,
        sessions ended, a pending reset link cancelled. The profile records it as what
        the import set (``activated`` false), so a reactivation in authgate stands."""
        done = Deactivated(user.login)
        if user.activated or user.activation_pending:
            user.activated = False
            user.activation_pending = False
            end_sessions(user, self._now)
            cancel_reset_link(user)
            keys = self._work.db.api_keys(self._work.session)
            done.suspended = await suspend_owner_keys(self._work, keys, user.id, now=self._now)
            note = "deleted in UTMStack: deactivated"
            if done.suspended:
                note += f", its {len(done.suspended)} other live key(s) suspended"
        else:
            note = "deleted in UTMStack: deactivated in authgate already"
        profile = _profile(user)
        profile[_MARK] = True
        fields = profile.get("importedFields")
        if isinstance(fields, dict):
            fields["activated"] = False
        user.legacy_profile = json.dumps(profile, sort_keys=True)
        user.updated_at = self._now
        self._work.publish(Change(ChangeKind.USER_CHANGED, str(user.id)))
        self._user_note(user, "deleted_in_utmstack", note)
        return done

    def _note(self, key: ApiKey, action: Action, note: str) -> None:
        self._report.add("key", key.legacy_id, key.name, action, note)

    def _user_note(self, user: User, action: Action, note: str) -> None:
        self._report.add("user", user.legacy_id, user.login, action, note)


def _active_admin(user: User) -> bool:
    return user.activated and ROLE_ADMIN in parse_authorities(user.authorities)


def merged_into_admin(user: User) -> bool:
    """Whether ``user`` is authgate's admin, onto which ``--merge-admin`` mapped
    UTMStack's (it holds UTMStack's admin's id, and is authgate's own user)."""
    return _profile(user).get("mergedIntoAdmin") is True


def _profile(user: User) -> dict[str, object]:
    try:
        document = json.loads(user.legacy_profile or "{}")
    except json.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}
