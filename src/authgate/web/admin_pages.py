"""Settings pages for administrators: users, the audit trail, the key review, alerts.

The same shape as the other pages: a GET renders; a form posts and, when the change is
made, redirects with a ``notice``; a refused change renders the page again (422 for
invalid input, 409 for a conflict) with the service's message next to the form that
failed and the values that were entered (never a password).
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.datastructures import FormData, QueryParams

from authgate.api.access import services_of, sets_credentials
from authgate.container import Services
from authgate.exceptions import Conflict, NotFound, ValidationFailed
from authgate.security.permissions import BUILT_IN_ROLES
from authgate.security.principal import ROLE_ADMIN, ROLE_ANALYST, ROLE_USER, ROLE_VIEWER
from authgate.services.alerts.kinds import KINDS, duration
from authgate.services.alerts.rules import RuleSpec, RuleView
from authgate.services.api_keys import ApiKeyView
from authgate.services.audit.events import EventType
from authgate.services.audit_export import as_csv, as_json_lines
from authgate.services.audit_verification import ChainVerification
from authgate.services.reset_keys import IssuedResetKey
from authgate.services.severity import SEVERITIES
from authgate.services.users import NewUser, UserChanges, UserView
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.paging import PageRequest, SortOrder
from authgate.web.pages import (
    LOGIN_PATH,
    AdminPageRoute,
    cookies_of,
    current_principal,
    error_page,
    redirect,
    render,
    stored_id,
)

router = APIRouter(prefix="/settings", route_class=AdminPageRoute)

USERS_PATH: Final = "/settings/users"
AUDIT_PATH: Final = "/settings/audit"
REVIEW_PATH: Final = "/settings/keys-review"
ALERTS_PATH: Final = "/settings/alerts"

# The roles an admin may give, with their labels (the built-in roles, most rights first).
ROLES: Final = (
    (ROLE_ADMIN, "Administrator"),
    (ROLE_ANALYST, "Analyst"),
    (ROLE_VIEWER, "Viewer"),
    (ROLE_USER, "User"),
)
USER_PAGE_SIZES: Final = (25, 50, 100, 200)
AUDIT_PAGE_SIZES: Final = (25, 50, 100, 200)
OUTCOMES: Final = ("success", "failure")
RECENT_ALERTS: Final = 50
MAX_DAYS: Final = 3650
# The unit a window is entered in: (name, seconds), largest first for display.
WINDOW_UNITS: Final = (("days", 86_400), ("hours", 3600), ("minutes", 60), ("seconds", 1))


@dataclass
class FormProblem:
    """Why one form was refused, shown next to that form and in the page's summary."""

    form: str  # which form: "create", "edit", "password", "delete", "enabled"
    form_id: str  # the form's HTML id; its fields are "<form_id>-<field>"
    target: str | None = None  # the login or rule id the form is about
    message: str | None = None  # about the whole form
    fields: dict[str, str] = field(default_factory=dict)  # field name -> message
    values: dict[str, Any] = field(default_factory=dict)  # what was entered
    status: int = 422

    def __post_init__(self) -> None:
        # A validation error without a field is about the whole form.
        if "form" in self.fields:
            self.message = self.message or self.fields.pop("form")


# -- users ------------------------------------------------------------------------------


@router.get("/users")
async def users_page(request: Request) -> Response:
    return await _users(request)


@router.post("/users")
@sets_credentials("creates a user with a password")
async def create_user(request: Request) -> Response:
    form = await request.form()
    login, email, roles = (
        _text(form, "login", 100),
        _text(form, "email", 320),
        _strings(form, "roles"),
    )
    values = {"login": login, "email": email, "roles": roles}
    services = services_of(request)
    password = _secret(form, "password")
    new = NewUser(login=login, email=email, password=password or None, authorities=frozenset(roles))
    try:
        if not password:
            user, issued = await services.users.invite_user(new)
            return await _hand_over(request, user, issued, created=True)
        created = await services.users.create_user(new)
    except ValidationFailed as error:
        problem = FormProblem("create", "create", fields=_user_fields(error), values=values)
        return await _users(request, problem)
    except Conflict as error:
        where = "email" if error.reason == "email_exists" else "login"
        problem = FormProblem(
            "create", "create", fields={where: error.message}, values=values, status=409
        )
        return await _users(request, problem)
    return redirect(USERS_PATH, notice=f"User {created.login} created.")


@router.post("/users/{login}/edit")
@sets_credentials("changes a user's roles and activation")
async def edit_user(request: Request, login: str) -> Response:
    form = await request.form()
    principal = current_principal(request)
    roles, activated = _strings(form, "roles"), form.get("activated") == "on"
    values = {"roles": roles, "activated": activated}
    target = _login(login)
    try:
        updated = await services_of(request).users.update_user(
            login,
            UserChanges(authorities=frozenset(roles), activated=activated),
            acting_user_id=principal.user_id,
        )
    except ValidationFailed as error:
        problem = FormProblem("edit", "", target=target, fields=_user_fields(error), values=values)
        return await _users(request, problem)
    except Conflict as error:
        problem = FormProblem(
            "edit", "", target=target, message=error.message, values=values, status=409
        )
        return await _users(request, problem)
    if updated.id == principal.user_id and ROLE_ADMIN not in updated.authorities:
        return redirect("/settings/account", notice="Saved. You are no longer an administrator.")
    return redirect(USERS_PATH, notice=f"Changes to {updated.login} saved.")


@router.post("/users/{login}/password")
@sets_credentials("resets a user's password")
async def reset_password(request: Request, login: str) -> Response:
    form = await request.form()
    services = services_of(request)
    target = _login(login)
    new_password = _secret(form, "new_password")
    if new_password != _secret(form, "confirm_password"):
        problem = FormProblem(
            "password", "", target=target, fields={"confirm_password": "The passwords differ."}
        )
        return await _users(request, problem)
    revoke_keys = form.get("revoke_api_keys") == "on"
    try:
        await services.users.set_password(login, new_password, revoke_api_keys=revoke_keys)
    except ValidationFailed as error:
        problem = FormProblem("password", "", target=target, fields=_user_fields(error))
        return await _users(request, problem)
    if target == current_principal(request).login:
        # A reset ends every session of the user: this one too.
        response = redirect(LOGIN_PATH, notice="Password changed. Sign in with the new one.")
        cookies_of(request).clear_session(response)
        return response
    ended = "Their sessions have ended" + (
        " and their API keys are revoked." if revoke_keys else "."
    )
    return redirect(USERS_PATH, notice=f"Password of {target} reset. {ended}")


@router.post("/users/{login}/reset-link")
@sets_credentials("issues a link that sets a user's password")
async def send_reset_link(request: Request, login: str) -> Response:
    user, issued = await services_of(request).users.new_reset_key(login)
    return await _hand_over(request, user, issued, created=False)


async def _hand_over(
    request: Request, user: UserView, issued: IssuedResetKey, *, created: bool
) -> Response:
    """Mail the reset link to the user, or, without SMTP, show it to the admin once."""
    resets = services_of(request).password_resets
    done = f"User {user.login} created. " if created else ""
    if await resets.deliver(user, issued):
        return redirect(USERS_PATH, notice=f"{done}A password link was e-mailed to {user.email}.")
    response = await _users(
        request,
        reset_link={
            "login": user.login,
            "url": resets.link(issued),
            "expires": issued.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/users/{login}/delete")
async def delete_user(request: Request, login: str) -> Response:
    target = _login(login)
    try:
        await services_of(request).users.delete_user(
            login, acting_user_id=current_principal(request).user_id
        )
    except Conflict as error:
        problem = FormProblem("delete", "", target=target, message=error.message, status=409)
        return await _users(request, problem)
    return redirect(USERS_PATH, notice=f"User {target} deleted.")


async def _users(
    request: Request,
    problem: FormProblem | None = None,
    *,
    reset_link: Mapping[str, str] | None = None,
) -> Response:
    services = services_of(request)
    params = request.query_params if problem is None else QueryParams("")
    number, size = _paging(params, USER_PAGE_SIZES, default=50)
    order = (SortOrder("login"),)
    page = await services.users.list_users(PageRequest(page=number - 1, size=size, sort=order))
    last = _page_count(page.total, size)
    if number > last:
        number = last
        page = await services.users.list_users(PageRequest(page=number - 1, size=size, sort=order))
    users = list(page.items)
    # The user whose forms are open (refused, or asked for with ?edit=) is shown even
    # when not on this page, first.
    focus = problem.target if problem is not None else _login(params.get("edit", ""))
    if focus and focus not in {user.login for user in users}:
        with contextlib.suppress(NotFound):
            users.insert(0, await services.users.get_user(focus))
    if problem is not None and problem.target is not None:
        user_id = next((user.id for user in users if user.login == problem.target), 0)
        problem.form_id = f"user-{user_id}-{problem.form}"
    create_values: Mapping[str, Any] = {"login": "", "email": "", "roles": [ROLE_USER]}
    if problem is not None and problem.form == "create":
        create_values = problem.values
    return render(
        request,
        "users.html",
        {
            "users": users,
            "pager": _pager(USERS_PATH, params, page.total, number, size, USER_PAGE_SIZES),
            "roles": ROLES,
            "role_labels": dict(ROLES),
            "role_permissions": BUILT_IN_ROLES,
            "create": create_values,
            "problem": problem,
            "open": focus,
            "me": current_principal(request).login,
            "password_min": services.settings.password_min_length,
            "password_max": services.settings.password_max_length,
            "reset_link": reset_link,
        },
        status=problem.status if problem else 200,
    )


def _user_fields(error: ValidationFailed) -> dict[str, str]:
    names = {"authorities": "roles", "newPassword": "new_password"}
    fields: dict[str, str] = {}
    for problem in error.field_errors:
        name = names.get(problem.field, problem.field)
        fields[name] = f"{fields[name]} {problem.message}" if name in fields else problem.message
    return fields or {"form": error.message}


def _login(raw: str) -> str:
    """A login as the user service normalizes it."""
    return raw.strip().lower()


# -- audit trail ------------------------------------------------------------------------


@dataclass
class AuditQuery:
    """The filter form read from a query string: the filter, or why it cannot be used."""

    where: AuditFilter
    values: dict[str, Any]
    errors: dict[str, str]

    def pairs(self) -> list[tuple[str, str]]:
        """The filter as query parameters (for paging and export links)."""
        pairs = [("type", t) for t in self.values["types"]]
        pairs += [(name, self.values[name]) for name in ("outcome", "actor", "ip", "from", "to")]
        return [(name, value) for name, value in pairs if value]


@router.get("/audit")
async def audit_page(request: Request) -> Response:
    return await _audit(request, request.query_params)


@router.get("/audit/export")
async def export_audit(request: Request) -> Response:
    query = _audit_query(request.query_params)
    export = request.query_params.get("format", "csv")
    if export not in ("csv", "json"):
        query.errors["format"] = "Choose CSV or JSON Lines."
    if query.errors:
        return error_page(request, 422, "Cannot export", " ".join(query.errors.values()))
    entries = services_of(request).audit.stream(query.where)
    if export == "json":
        body, media_type, extension = as_json_lines(entries), "application/x-ndjson", "jsonl"
    else:
        body, media_type, extension = as_csv(entries), "text/csv", "csv"
    return StreamingResponse(
        body,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="audit-events.{extension}"',
            "Cache-Control": "no-store",
        },
    )


@router.post("/audit/verify")
async def verify_audit(request: Request) -> Response:
    result = await services_of(request).audit.verify()
    return await _audit(request, QueryParams(""), verification=result)


async def _audit(
    request: Request, params: QueryParams, *, verification: ChainVerification | None = None
) -> Response:
    query = _audit_query(params)
    number, size = _paging(params, AUDIT_PAGE_SIZES, default=50)
    entries: Sequence[Any] = []
    total = 0
    if not query.errors:
        audit = services_of(request).audit
        page = await audit.search(query.where, PageRequest(page=number - 1, size=size))
        last = _page_count(page.total, size)
        if number > last:
            number = last
            page = await audit.search(query.where, PageRequest(page=number - 1, size=size))
        entries, total = page.items, page.total
    filters = query.pairs()
    return render(
        request,
        "audit.html",
        {
            "entries": entries,
            "pager": _pager(AUDIT_PATH, params, total, number, size, AUDIT_PAGE_SIZES),
            "filters": query.values,
            "errors": query.errors,
            "filtered": bool(filters),
            "event_types": [event.value for event in EventType],
            "outcomes": OUTCOMES,
            "sizes": AUDIT_PAGE_SIZES,
            "size": size,
            "export_csv": "/settings/audit/export?" + urlencode([("format", "csv"), *filters]),
            "export_json": "/settings/audit/export?" + urlencode([("format", "json"), *filters]),
            "verification": verification,
        },
        status=422 if query.errors else 200,
    )


def _audit_query(params: QueryParams) -> AuditQuery:
    errors: dict[str, str] = {}
    types = [t for t in params.getlist("type") if t][:30]
    known = {event.value for event in EventType}
    if any(t not in known for t in types):
        errors["type"] = "Choose an event type from the list."
    outcome = params.get("outcome", "")
    if outcome and outcome not in OUTCOMES:
        errors["outcome"] = "Choose success or failure."
    ip = _text(params, "ip", 64)
    client_ip = None
    if ip:
        try:
            client_ip = str(ipaddress.ip_address(ip))
        except ValueError:
            errors["ip"] = "Enter an IPv4 or IPv6 address, such as 203.0.113.7."
    since = _day(params, "from", errors)
    until = _day(params, "to", errors)
    if since is not None and until is not None and until < since:
        errors["to"] = "The end date is before the start date."
    actor = _text(params, "actor", 254)
    values = {
        "types": types,
        "outcome": outcome,
        "actor": actor,
        "ip": ip,
        "from": _text(params, "from", 32),
        "to": _text(params, "to", 32),
    }
    where = AuditFilter(
        event_types=tuple(types),
        outcome=outcome or None,
        actor=actor or None,
        client_ip=client_ip,
        since=datetime.combine(since, time.min, tzinfo=UTC) if since else None,
        # "to" is inclusive: everything before the next day.
        until=datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC) if until else None,
    )
    return AuditQuery(where=where, values=values, errors=errors)


def _day(params: QueryParams, name: str, errors: dict[str, str]) -> date | None:
    raw = _text(params, name, 32)
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        day = None
    if day is None or not 1 < day.year < 9999:  # the day after must exist too
        errors[name] = "Enter a date as YYYY-MM-DD."
        return None
    return day


# -- key review -------------------------------------------------------------------------


@router.get("/keys-review")
async def keys_review(request: Request) -> Response:
    params = request.query_params
    errors: dict[str, str] = {}
    unused_days = _bounded_int(params, "unusedDays", 30, 1, errors)
    expiring_days = _bounded_int(params, "expiringDays", 14, 0, errors)
    values = {
        "unusedDays": _text(params, "unusedDays", 12) or "30",
        "expiringDays": _text(params, "expiringDays", 12) or "14",
    }
    if errors:
        return render(
            request,
            "keys_review.html",
            {"sections": [], "values": values, "errors": errors},
            status=422,
        )
    services = services_of(request)
    review = await services.api_keys.review(unused_days=unused_days, expiring_days=expiring_days)
    owners = await _logins_by_id(services)
    now = services.clock()
    expiring_by = now + timedelta(days=expiring_days)

    def rows(keys: Sequence[ApiKeyView]) -> list[dict[str, Any]]:
        return [
            {"key": key, "owner": owners.get(key.owner_id), "badge": _badge(key, expiring_by)}
            for key in keys
        ]

    sections = [
        {
            "id": "unused",
            "title": "Unused",
            "description": f"Live keys not used for {unused_days} days or never used: "
            "revoke the ones nobody needs.",
            # Said of what this section checks only: a key created less than N days
            # ago and never used is listed in other sections as "never used".
            "empty": f"No live key has gone {unused_days} days without use. Keys younger "
            f"than {unused_days} days are not counted here, used or not.",
            "rows": rows(review.unused),
        },
        {
            "id": "unrestricted",
            "title": "Without IP restriction",
            "description": "Live keys accepted from any address: restrict them to the "
            "addresses their scripts call from.",
            "empty": "Every live key is restricted to some addresses.",
            "rows": rows(review.unrestricted),
        },
        {
            "id": "expiring",
            "title": "Expiring soon",
            "description": f"Live keys expiring within {expiring_days} days: regenerate or "
            "let them lapse.",
            "empty": "No live key expires in that time.",
            "rows": rows(review.expiring),
        },
        {
            "id": "broad",
            "title": "Broadest scopes",
            "description": "Live keys with the write or admin scope: give read-only "
            "integrations read-only keys.",
            "empty": "No live key has the write or admin scope.",
            "rows": rows(review.broad_scopes),
            "scopes": True,
        },
        {
            "id": "legacy",
            "title": "Imported from UTMStack",
            "description": "Rotate: plaintext was stored by UTMStack. Rotating gives an "
            "agk_ key; the old key keeps working for the grace period.",
            "empty": "No live key still has the secret UTMStack stored.",
            "rows": rows(review.legacy),
        },
        {
            "id": "beyond-expiry-policy",
            "title": "Expiry beyond the policy",
            "description": "Live keys without an expiry or expiring later than the "
            "maximum lifetime allows (an import keeps UTMStack's expiry): set one.",
            "empty": "Every live key expires within the maximum lifetime.",
            "rows": rows(review.beyond_expiry_policy),
        },
    ]
    return render(
        request, "keys_review.html", {"sections": sections, "values": values, "errors": {}}
    )


async def _logins_by_id(services: Services) -> dict[int, str]:
    """Every user's login by id (the review names owners, the keys hold ids)."""
    logins: dict[int, str] = {}
    number = 0
    while True:
        page = await services.users.list_users(PageRequest(page=number, size=1000))
        logins.update((user.id, user.login) for user in page.items)
        if not page.items or len(logins) >= page.total:
            return logins
        number += 1


def _badge(key: ApiKeyView, expiring_by: datetime) -> str:
    expiring = (
        key.status == "active" and key.expires_at is not None and key.expires_at <= expiring_by
    )
    return "expiring" if expiring else key.status


def _bounded_int(
    params: QueryParams, name: str, default: int, lowest: int, errors: dict[str, str]
) -> int:
    raw = params.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdecimal() or len(raw) > 9 or not lowest <= int(raw) <= MAX_DAYS:
        errors[name] = f"Enter a whole number of days from {lowest} to {MAX_DAYS}."
        return default
    return int(raw)


# -- alerts -----------------------------------------------------------------------------


@router.get("/alerts")
async def alerts_page(request: Request) -> Response:
    return await _alerts(request)


@router.post("/alerts/rules")
async def create_rule(request: Request) -> Response:
    form = await request.form()
    spec, values, errors = _rule_spec(form)
    if spec is None:
        return await _alerts(request, FormProblem("create", "create", fields=errors, values=values))
    try:
        created = await services_of(request).alert_rules.create(spec)
    except ValidationFailed as error:
        problem = FormProblem("create", "create", fields=_rule_fields(error), values=values)
        return await _alerts(request, problem)
    except Conflict as error:
        problem = FormProblem(
            "create", "create", fields={"name": error.message}, values=values, status=409
        )
        return await _alerts(request, problem)
    return redirect(ALERTS_PATH, notice=f"Alert rule {created.name} created.")


@router.post("/alerts/rules/{rule_id:int}/edit")
async def edit_rule(request: Request, rule_id: int) -> Response:
    _check_rule_id(rule_id)
    form = await request.form()
    spec, values, errors = _rule_spec(form)
    form_id = f"rule-{rule_id}-edit"
    target = str(rule_id)
    if spec is None:
        problem = FormProblem("edit", form_id, target=target, fields=errors, values=values)
        return await _alerts(request, problem)
    try:
        updated = await services_of(request).alert_rules.update(rule_id, spec)
    except ValidationFailed as error:
        problem = FormProblem(
            "edit", form_id, target=target, fields=_rule_fields(error), values=values
        )
        return await _alerts(request, problem)
    except Conflict as error:
        problem = FormProblem(
            "edit", form_id, target=target, fields={"name": error.message}, values=values,
            status=409,
        )  # fmt: skip
        return await _alerts(request, problem)
    return redirect(ALERTS_PATH, notice=f"Alert rule {updated.name} saved.")


@router.post("/alerts/rules/{rule_id:int}/enabled")
async def enable_rule(request: Request, rule_id: int) -> Response:
    _check_rule_id(rule_id)
    form = await request.form()
    enabled = form.get("enabled") == "1"
    rules = services_of(request).alert_rules
    rule = await rules.get(rule_id)
    try:
        await rules.update(
            rule_id,
            RuleSpec(
                name=rule.name,
                kind=rule.kind,
                threshold=rule.threshold,
                window_seconds=rule.window_seconds,
                severity=rule.severity,
                enabled=enabled,
            ),
        )
    except ValidationFailed as error:
        problem = FormProblem(
            "edit", f"rule-{rule_id}-edit", target=str(rule_id), fields=_rule_fields(error),
            values=_rule_values(rule),
        )  # fmt: skip
        return await _alerts(request, problem)
    state = "enabled" if enabled else "disabled"
    return redirect(ALERTS_PATH, notice=f"Alert rule {rule.name} {state}.")


@router.post("/alerts/rules/{rule_id:int}/delete")
async def delete_rule(request: Request, rule_id: int) -> Response:
    _check_rule_id(rule_id)
    rules = services_of(request).alert_rules
    rule = await rules.get(rule_id)
    await rules.delete(rule_id)
    return redirect(ALERTS_PATH, notice=f"Alert rule {rule.name} deleted.")


@router.post("/alerts/test")
async def send_test_alert(request: Request) -> Response:
    sinks = services_of(request).alerts.send_test()
    noun = "sink" if sinks == 1 else "sinks"
    return redirect(ALERTS_PATH, notice=f"A test alert was queued for {sinks} alert {noun}.")


async def _alerts(request: Request, problem: FormProblem | None = None) -> Response:
    services = services_of(request)
    rules = await services.alert_rules.list()
    fired = await services.alerts.recent(page=0, size=RECENT_ALERTS)
    rows = []
    for rule in rules:
        values = _rule_values(rule)
        if problem is not None and problem.form == "edit" and problem.target == str(rule.id):
            values = problem.values
        rows.append({"rule": rule, "window": duration(rule.window_seconds), "form": values})
    create_values: Mapping[str, Any] = {
        "name": "",
        "kind": next(iter(KINDS)),
        "threshold": "5",
        "window": "5",
        "window_unit": "minutes",
        "severity": "medium",
        "enabled": True,
    }
    if problem is not None and problem.form == "create":
        create_values = problem.values
    return render(
        request,
        "alerts.html",
        {
            "rules": rows,
            "fired": fired.items,
            "fired_total": fired.total,
            "kinds": [(kind.name, kind.description) for kind in KINDS.values()],
            "single_event_kinds": [kind.name for kind in KINDS.values() if kind.single_event],
            "severities": SEVERITIES,
            "units": [name for name, _ in WINDOW_UNITS],
            "create": create_values,
            "problem": problem,
        },
        status=problem.status if problem else 200,
    )


def _check_rule_id(rule_id: int) -> None:
    stored_id(rule_id, NotFound("Alert rule not found", reason="alert_rule_not_found"))


def _rule_spec(form: FormData) -> tuple[RuleSpec | None, dict[str, Any], dict[str, str]]:
    """The rule form as a RuleSpec, or the field errors of what cannot even be read."""
    values: dict[str, Any] = {
        "name": _text(form, "name", 200),
        "kind": _text(form, "kind", 60),
        "threshold": _text(form, "threshold", 12),
        "window": _text(form, "window", 12),
        "window_unit": _text(form, "window_unit", 10),
        "severity": _text(form, "severity", 10),
        "enabled": form.get("enabled") == "on",
    }
    errors: dict[str, str] = {}
    threshold = _whole_number(values["threshold"])
    if threshold is None:
        errors["threshold"] = "Enter the threshold as a whole number, such as 5."
    window = _whole_number(values["window"])
    unit = dict(WINDOW_UNITS).get(values["window_unit"])
    if window is None or unit is None:
        errors["window"] = "Enter the window as a whole number of seconds, minutes, hours or days."
    if threshold is None or window is None or unit is None:
        return None, values, errors
    spec = RuleSpec(
        name=values["name"],
        kind=values["kind"],
        threshold=threshold,
        window_seconds=window * unit,
        severity=values["severity"],
        enabled=values["enabled"],
    )
    return spec, values, {}


def _rule_values(rule: RuleView) -> dict[str, Any]:
    window, unit = _split_window(rule.window_seconds)
    return {
        "name": rule.name,
        "kind": rule.kind,
        "threshold": str(rule.threshold),
        "window": str(window),
        "window_unit": unit,
        "severity": rule.severity,
        "enabled": rule.enabled,
    }


def _rule_fields(error: ValidationFailed) -> dict[str, str]:
    names = {"windowSeconds": "window"}
    fields = {names.get(e.field, e.field): e.message for e in error.field_errors}
    return fields or {"form": error.message}


def _split_window(seconds: int) -> tuple[int, str]:
    """The largest unit that holds ``seconds`` exactly: 300 -> (5, "minutes")."""
    for name, size in WINDOW_UNITS:
        if seconds >= size and seconds % size == 0:
            return seconds // size, name
    return seconds, "seconds"


def _whole_number(raw: str) -> int | None:
    """An integer as typed (a leading minus allowed, so the service can name the rule)."""
    digits = raw[1:] if raw.startswith("-") else raw
    return int(raw) if digits.isdecimal() and len(digits) <= 9 else None


# -- shared -----------------------------------------------------------------------------


def _text(data: FormData | QueryParams, name: str, limit: int) -> str:
    value = data.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _secret(form: FormData, name: str) -> str:
    """A password as typed (never stripped), bounded."""
    value = form.get(name)
    return value[:1024] if isinstance(value, str) else ""


def _strings(form: FormData, name: str) -> list[str]:
    return [value[:64] for value in form.getlist(name) if isinstance(value, str)][:10]


def _paging(params: QueryParams, sizes: Sequence[int], *, default: int) -> tuple[int, int]:
    """(page number from 1, page size) from the query string; nonsense means the default."""
    raw_page = params.get("page", "")
    number = int(raw_page) if raw_page.isdecimal() and 0 < len(raw_page) <= 9 else 1
    raw_size = params.get("size", "")
    size = int(raw_size) if raw_size.isdecimal() and len(raw_size) <= 4 else default
    size = size if size in sizes else default
    return max(number, 1), size


def _page_count(total: int, size: int) -> int:
    return max(1, math.ceil(total / size))


def _pager(
    path: str, params: QueryParams, total: int, number: int, size: int, sizes: Sequence[int]
) -> dict[str, Any]:
    """Links to the first, previous, next and last pages and to other page sizes,
    keeping the rest of the query string."""
    pages = _page_count(total, size)

    def url(**changes: int) -> str:
        kept = [
            (name, value)
            for name, value in params.multi_items()
            if name not in changes and name not in ("notice", "page")
        ]
        query = urlencode([*kept, *((name, str(value)) for name, value in changes.items())])
        return f"{path}?{query}"

    return {
        "page": number,
        "pages": pages,
        "total": total,
        "first": (number - 1) * size + 1 if total else 0,
        "last": min(number * size, total),
        "first_url": url(page=1) if number > 1 else None,
        "prev_url": url(page=number - 1) if number > 1 else None,
        "next_url": url(page=number + 1) if number < pages else None,
        "last_url": url(page=pages) if number < pages else None,
        "sizes": [(choice, url(size=choice, page=1), choice == size) for choice in sizes],
    }
