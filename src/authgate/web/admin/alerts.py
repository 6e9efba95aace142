"""The alerts page for administrators: alert rules, the alerts fired, a test alert."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Final

from fastapi import APIRouter, Request, Response
from starlette.datastructures import FormData

from authgate.api.access import services_of
from authgate.exceptions import Conflict, NotFound, ValidationFailed
from authgate.reasons import Reason
from authgate.services.alerts.kinds import KINDS, duration
from authgate.services.alerts.rules import RuleSpec, RuleView, validate
from authgate.services.severity import SEVERITIES
from authgate.storage.paging import PageRequest
from authgate.web import forms
from authgate.web.forms import FormProblem
from authgate.web.pages import AdminPageRoute, redirect_with_notice, render, stored_id

router = APIRouter(prefix="/settings", route_class=AdminPageRoute)

ALERTS_PATH: Final = "/settings/alerts"
RECENT_ALERTS: Final = 50
# The unit a window is entered in: (name, seconds), largest first for display.
WINDOW_UNITS: Final = (("days", 86_400), ("hours", 3600), ("minutes", 60), ("seconds", 1))


@router.get("/alerts")
async def alerts_page(request: Request) -> Response:
    return await _alerts(request)


@router.post("/alerts/rules")
async def create_rule(request: Request) -> Response:
    rules = services_of(request).alert_rules
    saved = await _save_rule(request, rules.create, partial(FormProblem, "create", "create"))
    if isinstance(saved, Response):
        return saved
    return redirect_with_notice(request, ALERTS_PATH, f"Alert rule {saved.name} created.")


@router.post("/alerts/rules/{rule_id:int}/edit")
async def edit_rule(request: Request, rule_id: int) -> Response:
    _check_rule_id(rule_id)
    rules = services_of(request).alert_rules
    saved = await _save_rule(request, partial(rules.update, rule_id), _edit_refused(rule_id))
    if isinstance(saved, Response):
        return saved
    return redirect_with_notice(request, ALERTS_PATH, f"Alert rule {saved.name} saved.")


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
        refused = _edit_refused(rule_id)
        return await _alerts(
            request, refused(fields=_rule_fields(error), values=_rule_values(rule))
        )
    state = "enabled" if enabled else "disabled"
    return redirect_with_notice(request, ALERTS_PATH, f"Alert rule {rule.name} {state}.")


@router.post("/alerts/rules/{rule_id:int}/delete")
async def delete_rule(request: Request, rule_id: int) -> Response:
    _check_rule_id(rule_id)
    rules = services_of(request).alert_rules
    rule = await rules.get(rule_id)
    await rules.delete(rule_id)
    return redirect_with_notice(request, ALERTS_PATH, f"Alert rule {rule.name} deleted.")


@router.post("/alerts/test")
async def send_test_alert(request: Request) -> Response:
    sinks = services_of(request).alerts.send_test()
    noun = "sink" if sinks == 1 else "sinks"
    return redirect_with_notice(
        request, ALERTS_PATH, f"A test alert was queued for {sinks} alert {noun}."
    )


async def _alerts(request: Request, problem: FormProblem | None = None) -> Response:
    services = services_of(request)
    rules = await services.alert_rules.list()
    fired = await services.alerts.recent(PageRequest(size=RECENT_ALERTS))
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


async def _save_rule(
    request: Request,
    save: Callable[[RuleSpec], Awaitable[RuleView]],
    refused: partial[FormProblem],
) -> RuleView | Response:
    """The rule form saved by ``save``, or the page again with the form's problem (built
    by ``refused``): what cannot be read, what the service refuses, a name in use (409)."""
    spec, values, errors = _rule_spec(await request.form())
    if spec is None:
        return await _alerts(request, refused(fields=errors, values=values))
    try:
        return await save(spec)
    except ValidationFailed as error:
        problem = refused(fields=_rule_fields(error), values=values)
    except Conflict as error:
        problem = refused(fields={"name": error.message}, values=values, status=409)
    return await _alerts(request, problem)


def _edit_refused(rule_id: int) -> partial[FormProblem]:
    """The problem of the rule's edit form, given its fields and values."""
    return partial(FormProblem, "edit", f"rule-{rule_id}-edit", target=str(rule_id))


def _check_rule_id(rule_id: int) -> None:
    stored_id(rule_id, NotFound("Alert rule not found", reason=Reason.ALERT_RULE_NOT_FOUND))


def _rule_spec(form: FormData) -> tuple[RuleSpec | None, dict[str, Any], dict[str, str]]:
    """The rule form as a RuleSpec, or the field errors of what cannot even be read."""
    values: dict[str, Any] = {
        "name": forms.text(form, "name", 200),
        "kind": forms.text(form, "kind", 60),
        "threshold": forms.text(form, "threshold", 12),
        "window": forms.text(form, "window", 12),
        "window_unit": forms.text(form, "window_unit", 10),
        "severity": forms.text(form, "severity", 10),
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
    # With stand-ins for the numbers that could not be read: the service's rules then name
    # the other fields' problems too, in the same answer.
    spec = RuleSpec(
        name=values["name"],
        kind=values["kind"],
        threshold=threshold if threshold is not None else 1,
        window_seconds=window * unit if window is not None and unit is not None else 60,
        severity=values["severity"],
        enabled=values["enabled"],
    )
    if errors:
        try:
            validate(spec)
        except ValidationFailed as error:
            errors = {**_rule_fields(error), **errors}
        return None, values, errors
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
