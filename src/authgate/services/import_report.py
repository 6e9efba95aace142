"""What an import did (or, in a dry run, would do): one entry per user and key.

Entries name things by their UTMStack id and login or key name; never a key, a password
hash or a second-factor secret, so the report can be printed, saved and shared.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from authgate.services.utmstack_rows import Variant

Kind = Literal["user", "key"]
# "deleted_in_authgate": imported by an earlier run, deleted in authgate since: not
# re-created.
Action = Literal["created", "updated", "unchanged", "skipped", "conflict", "deleted_in_authgate"]
ACTIONS: tuple[Action, ...] = (
    "created",
    "updated",
    "unchanged",
    "skipped",
    "conflict",
    "deleted_in_authgate",
)
DELETED_IN_AUTHGATE = "deleted in authgate, not re-created"


@dataclass(frozen=True, slots=True)
class ReportEntry:
    """One user or key: what happened, and why (skipped, conflict) or what to look at
    (flags such as a default password or an expiry beyond the policy). ``kept``: the
    fields changed in authgate since the last import that were kept (UTMStack's value
    had not changed)."""

    kind: Kind
    source_id: str
    name: str
    action: Action
    notes: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "utmstackId": self.source_id,
            "name": self.name,
            "action": self.action,
            "notes": list(self.notes),
            "keptFromAuthgate": list(self.kept),
        }


@dataclass(slots=True)
class ImportReport:
    source: str
    dry_run: bool
    entries: list[ReportEntry] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=list)
    # Users whose UTMStack EMAIL second factor was not imported for want of an SMTP
    # server: they sign in with their password alone until it is set and a run imports it.
    email_factors_waiting: int = 0
    # Users whose UTMStack TOTP secret no code can be computed from (not base32, or
    # under 112 bits): not imported; they sign in with their password alone (or enrol,
    # when they must have a second factor) until UTMStack's is fixed and a run imports it.
    totp_factors_unusable: int = 0

    def add(
        self,
        kind: Kind,
        source_id: object,
        name: str,
        action: Action,
        *notes: str,
        kept: tuple[str, ...] = (),
    ) -> ReportEntry:
        entry = ReportEntry(kind, str(source_id), name, action, tuple(notes), kept)
        self.entries.append(entry)
        return entry

    def counts(self) -> dict[str, dict[str, int]]:
        """``{"users": {"created": 3, ...}, "keys": {...}}``, every action present."""
        counted = Counter((entry.kind, entry.action) for entry in self.entries)
        return {
            f"{kind}s": {action: counted[(kind, action)] for action in ACTIONS}
            for kind in ("user", "key")
        }

    @property
    def changed(self) -> bool:
        return any(entry.action in ("created", "updated") for entry in self.entries)

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dryRun": self.dry_run,
            "counts": self.counts(),
            "secondFactors": {
                "emailNotImportedNoSmtp": self.email_factors_waiting,
                "totpNotImportedUnusableSecret": self.totp_factors_unusable,
            },
            "variants": [{"subject": v.subject, "note": v.note} for v in self.variants],
            "entries": [entry.as_json() for entry in self.entries],
        }
