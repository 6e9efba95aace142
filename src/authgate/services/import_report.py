"""What an import did (or, in a dry run, would do): one entry per user and key.

Entries name things by their UTMStack id and login or key name; never a key, a password
hash or a second-factor secret, so the report can be printed, saved and shared.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from authgate.services.utmstack_rows import UNREAD_SWITCH, TfaSwitch, Variant

Kind = Literal["user", "key"]
# "deleted_in_authgate": imported by an earlier run, deleted in authgate since: not
# re-created. "deleted_in_utmstack": imported by an earlier run, its row deleted in
# UTMStack since: this run revoked the key, or deactivated the user.
Action = Literal[
    "created",
    "updated",
    "unchanged",
    "skipped",
    "conflict",
    "deleted_in_authgate",
    "deleted_in_utmstack",
]
ACTIONS: tuple[Action, ...] = get_args(Action)
DELETED_IN_AUTHGATE = "deleted in authgate, not re-created"
# A row an earlier run imported that this run skips (fs_manager without
# --include-fs-manager, a conflict, an unreadable row...): still in UTMStack, so it is
# neither updated nor taken as deleted.
LEFT_AS_IT_IS = "imported by an earlier run: left as it is in authgate"


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
    # UTMStack's global two-factor switch, as read from its source.
    tfa_switch: TfaSwitch = UNREAD_SWITCH
    # Users with a second factor in UTMStack's rows that UTMStack did not ask for (the
    # switch is off): not put in force.
    factors_switch_off: int = 0

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
        changes = ("created", "updated", "deleted_in_utmstack")
        return any(entry.action in changes for entry in self.entries)

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dryRun": self.dry_run,
            "counts": self.counts(),
            "secondFactors": {
                "emailNotImportedNoSmtp": self.email_factors_waiting,
                "totpNotImportedUnusableSecret": self.totp_factors_unusable,
                "notImportedSwitchOff": self.factors_switch_off,
            },
            "twoFactorSwitch": {
                "state": switch_state(self.tfa_switch),
                "detail": self.tfa_switch.detail,
                "utmstackFlow": self.tfa_switch.flow,
                "authgateSettings": switch_settings(self.tfa_switch),
            },
            "variants": [{"subject": v.subject, "note": v.note} for v in self.variants],
            "entries": [entry.as_json() for entry in self.entries],
        }


def switch_state(switch: TfaSwitch) -> str:
    return {True: "on", False: "off", None: "unknown"}[switch.enabled]


def switch_settings(switch: TfaSwitch) -> dict[str, str] | None:
    """authgate's settings that reproduce what UTMStack's switch did for users without a
    factor of their own (None: unknown). On: v10 e-mailed every user a code at each login;
    v11 asked everyone for a factor and had those without one enrol. Off: nobody."""
    if switch.enabled is None:
        return None
    if not switch.enabled:
        return {"AUTHGATE_TFA_REQUIRED": "none"}
    if switch.flow == "v10":
        return {"AUTHGATE_TFA_REQUIRED": "all", "AUTHGATE_TFA_UNENROLLED": "email"}
    return {"AUTHGATE_TFA_REQUIRED": "all", "AUTHGATE_TFA_UNENROLLED": "enrol"}


# UTMStack v12's UI signs in at /api/v1/auth/login, which cannot take a user through
# enrolment (v12 has none at login): AUTHGATE_TFA_UNENROLLED=enrol refuses such a user.
V12_UI_NOTICE = (
    "a site that uses UTMStack v12's UI cannot enrol users at login (v12's UI has no "
    "forced enrolment: /api/v1/auth/login answers 403 to a user without a factor, which "
    'v12\'s UI shows as "account deactivated"): there set AUTHGATE_TFA_UNENROLLED=email '
    "instead (a code mailed at each login, which v12's login page asks for; needs an SMTP "
    "server, AUTHGATE_ALERT_SMTP_HOST), or AUTHGATE_TFA_REQUIRED=none (as v12 itself, "
    "which asks only users who enrolled a factor)"
)


def switch_notice(
    switch: TfaSwitch, *, required: str | None = None, unenrolled: str | None = None
) -> str:
    """What the operator should know of UTMStack's switch, one paragraph; ``required`` and
    ``unenrolled``: authgate's current settings, when known."""
    wanted = switch_settings(switch)
    if wanted is None:
        return (
            "UTMStack's two-factor switch (utmstack.tfa.enable) could not be read: "
            f"{switch.detail}; second factors were taken from UTMStack's rows as they are; "
            "check the switch in "
            "UTMStack's settings and set AUTHGATE_TFA_REQUIRED / AUTHGATE_TFA_UNENROLLED "
            "to match (see README, Migrating from UTMStack)"
        )
    if not switch.enabled:
        text = (
            "UTMStack's two-factor switch (utmstack.tfa.enable) is off: UTMStack asked "
            "nobody for a second factor, so none of its users' factors was put in force; "
            "AUTHGATE_TFA_REQUIRED=none does the same"
        )
    elif switch.flow == "v10":
        text = (
            "UTMStack's two-factor switch (utmstack.tfa.enable) is on: UTMStack v10 "
            "e-mailed every user a code at each login; for users without a factor of their "
            "own authgate does the same with AUTHGATE_TFA_REQUIRED=all and "
            "AUTHGATE_TFA_UNENROLLED=email (and an SMTP server, AUTHGATE_ALERT_SMTP_HOST)"
        )
    else:
        text = (
            "UTMStack's two-factor switch (utmstack.tfa.enable) is on: UTMStack v11 asked "
            "every user for their second factor and had users without one enrol; authgate "
            "does the same with AUTHGATE_TFA_REQUIRED=all (AUTHGATE_TFA_UNENROLLED=enrol, "
            "the default)"
        )
    current = {"AUTHGATE_TFA_REQUIRED": required, "AUTHGATE_TFA_UNENROLLED": unenrolled}
    if required is not None:
        differs = [
            f"{name}={current[name]}"
            for name, value in wanted.items()
            if current.get(name) is not None and current[name] != value
        ]
        text += "; authgate now has " + ", ".join(differs) if differs else "; authgate is set so"
    if wanted.get("AUTHGATE_TFA_UNENROLLED") == "enrol":
        text += "; but " + V12_UI_NOTICE
    return text
