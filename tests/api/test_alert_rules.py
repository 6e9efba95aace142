"""Alert rules through the HTTP API: CRUD for admins, access control, validation (422 with
fieldErrors), name conflicts, the default rules, auditing, and rules from the settings."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from authgate.app import create_app
from authgate.exceptions import ConfigurationError
from authgate.services.alerts.rules import DEFAULT_RULES, MAX_WINDOW_SECONDS
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.models import FiredAlert
from authgate.storage.paging import PageRequest
from tests.conftest import FakeClock, Harness, bearer, test_settings

RULES = "/api/alert-rules"

NEW_RULE: dict[str, Any] = {
    "name": "Failed logins for the CFO",
    "kind": "failed_logins_per_account",
    "threshold": 3,
    "windowSeconds": 120,
    "severity": "critical",
}


async def create_rule(harness: Harness, token: str, **changes: Any) -> dict[str, Any]:
    response = await harness.client.post(RULES, json={**NEW_RULE, **changes}, headers=bearer(token))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def rule_names(harness: Harness, token: str) -> list[str]:
    response = await harness.client.get(RULES, headers=bearer(token))
    assert response.status_code == 200, response.text
    return [rule["name"] for rule in response.json()]


# -- CRUD ---------------------------------------------------------------------------------------


async def test_create_returns_the_rule_without_location(harness: Harness, admin_token: str) -> None:
    """POST answers 201 with the stored rule (id, fields, timestamps) and no Location header."""
    response = await harness.client.post(RULES, json=NEW_RULE, headers=bearer(admin_token))

    assert response.status_code == 201, response.text
    assert "location" not in response.headers
    body = response.json()
    assert isinstance(body["id"], int)
    assert body["id"] >= 1
    assert {k: body[k] for k in NEW_RULE} == NEW_RULE
    assert body["enabled"] is True
    assert body["createdAt"] == body["updatedAt"]
    assert set(body) == {*NEW_RULE, "id", "enabled", "createdAt", "updatedAt"}


async def test_create_applies_defaults_for_omitted_fields(
    harness: Harness, admin_token: str
) -> None:
    """Omitted threshold, window, severity and enabled default to 1, 300 s, medium, true."""
    response = await harness.client.post(
        RULES, json={"name": "Minimal", "kind": "lockouts"}, headers=bearer(admin_token)
    )

    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["threshold"], created["windowSeconds"]) == (1, 300)
    assert (created["severity"], created["enabled"]) == ("medium", True)


async def test_single_event_kinds_always_have_threshold_one(
    harness: Harness, admin_token: str
) -> None:
    """key_new_ip and key_after_inactivity fire on one event: a higher threshold is stored as 1."""
    new_ip = await create_rule(harness, admin_token, name="New IP", kind="key_new_ip", threshold=7)
    idle = await create_rule(
        harness, admin_token, name="Idle", kind="key_after_inactivity", threshold=9
    )

    assert new_ip["threshold"] == 1
    assert idle["threshold"] == 1


async def test_list_get_update_and_delete(harness: Harness, admin_token: str) -> None:
    """A created rule is listed and readable; PUT replaces it; DELETE answers 204 and removes it."""
    created = await create_rule(harness, admin_token)
    url = f"{RULES}/{created['id']}"

    listed = await harness.client.get(RULES, headers=bearer(admin_token))
    assert listed.status_code == 200
    assert created in listed.json()
    ids = [rule["id"] for rule in listed.json()]
    assert ids == sorted(ids)

    fetched = await harness.client.get(url, headers=bearer(admin_token))
    assert fetched.status_code == 200
    assert fetched.json() == created

    harness.clock.advance(seconds=5)
    replacement = {
        "name": "Renamed",
        "kind": "failed_logins_per_ip",
        "threshold": 9,
        "windowSeconds": 900,
        "severity": "low",
        "enabled": False,
    }
    updated = await harness.client.put(url, json=replacement, headers=bearer(admin_token))
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert {k: body[k] for k in replacement} == replacement
    assert body["id"] == created["id"]
    assert body["createdAt"] == created["createdAt"]
    assert body["updatedAt"] != created["updatedAt"]
    assert (await harness.client.get(url, headers=bearer(admin_token))).json() == body

    deleted = await harness.client.delete(url, headers=bearer(admin_token))
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await harness.client.get(url, headers=bearer(admin_token))).status_code == 404
    assert "Renamed" not in await rule_names(harness, admin_token)


async def test_put_keeping_its_own_name_is_allowed(harness: Harness, admin_token: str) -> None:
    """Replacing a rule without renaming it is not a name conflict with itself."""
    created = await create_rule(harness, admin_token)

    response = await harness.client.put(
        f"{RULES}/{created['id']}", json={**NEW_RULE, "threshold": 4}, headers=bearer(admin_token)
    )

    assert response.status_code == 200, response.text
    assert response.json()["threshold"] == 4


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_unknown_rule_id_is_404(harness: Harness, admin_token: str, method: str) -> None:
    """GET, PUT and DELETE of a rule id that does not exist answer 404."""
    body = NEW_RULE if method == "PUT" else None
    response = await harness.client.request(
        method, f"{RULES}/999999", json=body, headers=bearer(admin_token)
    )

    assert response.status_code == 404, response.text
    assert response.json()["status"] == 404


async def test_non_numeric_rule_id_is_422(harness: Harness, admin_token: str) -> None:
    """A rule id that is not a positive integer is a validation error, not a 404 or 500."""
    for rule_id in ("abc", "0"):
        response = await harness.client.get(f"{RULES}/{rule_id}", headers=bearer(admin_token))
        assert response.status_code == 422, (rule_id, response.text)


# -- fired alerts -------------------------------------------------------------------------------


async def fire(harness: Harness, *counts: int) -> list[int]:
    """Fired alerts with these counts, one second apart (oldest first); their ids."""
    rows = [
        FiredAlert(
            rule_key=f"rule-{index}",
            rule_name="Failed logins",
            kind="failed_logins_per_account",
            severity="high",
            subject=f"account:user{index}",
            window_start=index,
            fired_at=harness.clock() + timedelta(seconds=index),
            count=count,
            summary="failed logins",
        )
        for index, count in enumerate(counts)
    ]
    async with harness.services.db.transaction() as session:
        session.add_all(rows)
    return [row.id for row in rows]


async def test_fired_alerts_sort_like_the_other_paged_routes(
    harness: Harness, admin_token: str
) -> None:
    """GET /api/alerts lists newest first, and ``sort=`` orders by a known field."""
    ids = await fire(harness, 7, 3, 5)

    async def listed(**params: str) -> list[int]:
        response = await harness.client.get(
            "/api/alerts", params=params, headers=bearer(admin_token)
        )
        assert response.status_code == 200, response.text
        assert response.headers["X-Total-Count"] == "3"
        assert 'rel="first"' in response.headers["Link"]
        return [alert["id"] for alert in response.json()]

    assert await listed() == ids[::-1]
    assert await listed(sort="firedAt,asc") == ids
    assert await listed(sort="count,desc") == [ids[0], ids[2], ids[1]]


@pytest.mark.parametrize(
    "params",
    [{"sort": "bogus,asc"}, {"sort": "summary"}, {"sort": "firedAt,sideways"}, {"page": -1}],
)
async def test_fired_alerts_refuse_bad_paging_with_422(
    harness: Harness, admin_token: str, params: dict[str, str | int]
) -> None:
    """An unknown sort field is refused, as on every paged route, never ignored."""
    response = await harness.client.get("/api/alerts", params=params, headers=bearer(admin_token))

    assert response.status_code == 422, response.text
    field = "sort" if "sort" in params else "page"
    assert [error["field"] for error in response.json()["fieldErrors"]] == [field]


# -- access control -----------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", RULES, None),
    ("POST", RULES, NEW_RULE),
    ("GET", f"{RULES}/1", None),
    ("PUT", f"{RULES}/1", NEW_RULE),
    ("DELETE", f"{RULES}/1", None),
    ("GET", "/api/alerts", None),
    ("POST", "/api/alert-sinks/test", None),
]


@pytest.mark.parametrize(("method", "url", "body"), ENDPOINTS)
async def test_ordinary_users_are_refused_with_403(
    harness: Harness, user_token: str, method: str, url: str, body: dict[str, Any] | None
) -> None:
    """Alert rules, fired alerts and the sink test are for administrators only."""
    response = await harness.client.request(method, url, json=body, headers=bearer(user_token))

    assert response.status_code == 403, response.text


@pytest.mark.parametrize(("method", "url", "body"), ENDPOINTS)
async def test_anonymous_callers_are_refused_with_401(
    harness: Harness, method: str, url: str, body: dict[str, Any] | None
) -> None:
    """Without credentials every alert endpoint answers 401 with WWW-Authenticate."""
    response = await harness.client.request(method, url, json=body)

    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_refused_callers_change_nothing(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """A refused create by an ordinary user does not store the rule."""
    await harness.client.post(RULES, json=NEW_RULE, headers=bearer(user_token))
    await harness.client.post(RULES, json=NEW_RULE)

    assert NEW_RULE["name"] not in await rule_names(harness, admin_token)


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "failed_logins_per_planet"}, "kind"),
        ({"kind": ""}, "kind"),
        ({"threshold": 0}, "threshold"),
        ({"threshold": -5}, "threshold"),
        ({"windowSeconds": 0}, "windowSeconds"),
        ({"windowSeconds": -60}, "windowSeconds"),
        ({"windowSeconds": MAX_WINDOW_SECONDS + 1}, "windowSeconds"),
        ({"severity": "urgent"}, "severity"),
        ({"severity": "HIGH"}, "severity"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"threshold": "many"}, "threshold"),
        ({"enabled": "maybe"}, "enabled"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_invalid_rule_is_422_with_field_errors(
    harness: Harness, admin_token: str, change: dict[str, Any], field: str
) -> None:
    """Each invalid or unknown field is named in a 422 fieldErrors entry; nothing is stored."""
    body = {**NEW_RULE, **change}

    created = await harness.client.post(RULES, json=body, headers=bearer(admin_token))

    assert created.status_code == 422, created.text
    assert field in [error["field"] for error in created.json()["fieldErrors"]]
    assert NEW_RULE["name"] not in await rule_names(harness, admin_token)

    rule = await create_rule(harness, admin_token, name="Valid")
    replaced = await harness.client.put(
        f"{RULES}/{rule['id']}", json={**body, "name": body.get("name", "Valid")},
        headers=bearer(admin_token),
    )  # fmt: skip
    assert replaced.status_code == 422, replaced.text
    assert field in [error["field"] for error in replaced.json()["fieldErrors"]]
    stored = await harness.client.get(f"{RULES}/{rule['id']}", headers=bearer(admin_token))
    assert stored.json() == rule


async def test_every_problem_is_reported_at_once(harness: Harness, admin_token: str) -> None:
    """A rule with several problems lists all of them in fieldErrors."""
    body = {"name": " ", "kind": "nope", "threshold": 0, "windowSeconds": 0, "severity": "x"}

    response = await harness.client.post(RULES, json=body, headers=bearer(admin_token))

    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["fieldErrors"]}
    assert fields == {"name", "kind", "threshold", "windowSeconds", "severity"}


async def test_window_of_exactly_366_days_is_accepted(harness: Harness, admin_token: str) -> None:
    """The longest allowed window, 366 days, is valid (the bound is inclusive)."""
    created = await create_rule(harness, admin_token, windowSeconds=MAX_WINDOW_SECONDS)

    assert created["windowSeconds"] == MAX_WINDOW_SECONDS


async def test_missing_name_and_kind_are_required(harness: Harness, admin_token: str) -> None:
    """A body without name and kind is a 422 naming both fields."""
    response = await harness.client.post(RULES, json={}, headers=bearer(admin_token))

    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["fieldErrors"]}
    assert {"name", "kind"} <= fields


# -- conflicts ----------------------------------------------------------------------------------


async def test_duplicate_name_is_409(harness: Harness, admin_token: str) -> None:
    """A second rule with a taken name (even with surrounding spaces) is refused with 409."""
    await create_rule(harness, admin_token)

    same = await harness.client.post(RULES, json=NEW_RULE, headers=bearer(admin_token))
    padded = await harness.client.post(
        RULES, json={**NEW_RULE, "name": f"  {NEW_RULE['name']}  "}, headers=bearer(admin_token)
    )

    assert same.status_code == 409, same.text
    assert padded.status_code == 409, padded.text
    assert (await rule_names(harness, admin_token)).count(NEW_RULE["name"]) == 1


async def test_renaming_to_a_taken_name_is_409(harness: Harness, admin_token: str) -> None:
    """PUT that renames a rule to another rule's name is refused with 409 and changes nothing."""
    await create_rule(harness, admin_token)
    other = await create_rule(harness, admin_token, name="Other rule")

    response = await harness.client.put(
        f"{RULES}/{other['id']}", json=NEW_RULE, headers=bearer(admin_token)
    )

    assert response.status_code == 409, response.text
    stored = await harness.client.get(f"{RULES}/{other['id']}", headers=bearer(admin_token))
    assert stored.json()["name"] == "Other rule"


# -- defaults, audit ------------------------------------------------------------------------------


async def test_default_rules_are_installed_on_first_start(
    harness: Harness, admin_token: str
) -> None:
    """A fresh installation has exactly the default rules, enabled and as specified."""
    response = await harness.client.get(RULES, headers=bearer(admin_token))

    stored = {rule["name"]: rule for rule in response.json()}
    assert set(stored) == {spec.name for spec in DEFAULT_RULES}
    for spec in DEFAULT_RULES:
        rule = stored[spec.name]
        assert (rule["kind"], rule["threshold"]) == (spec.kind, spec.threshold)
        assert (rule["windowSeconds"], rule["severity"]) == (spec.window_seconds, spec.severity)
        assert rule["enabled"] is True


async def test_deleted_defaults_stay_deleted_after_a_restart(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    """Defaults are installed only into an empty rule table: a restart does not bring back
    a default an administrator deleted."""
    settings = test_settings(tmp_path / "data", database_url=database_url)
    first = create_app(settings, clock=clock)
    async with first.router.lifespan_context(first):
        rules = first.state.services.alert_rules
        victim = next(rule for rule in await rules.list() if rule.name == DEFAULT_RULES[0].name)
        await rules.delete(victim.id)

    second = create_app(settings, clock=clock)
    async with second.router.lifespan_context(second):
        names = {rule.name for rule in await second.state.services.alert_rules.list()}

    assert DEFAULT_RULES[0].name not in names
    assert names == {spec.name for spec in DEFAULT_RULES[1:]}


async def test_each_change_is_audited_as_alert_rule_changed(
    harness: Harness, admin_token: str
) -> None:
    """Create, update and delete each leave an ALERT_RULE_CHANGED record by the admin."""
    created = await create_rule(harness, admin_token)
    url = f"{RULES}/{created['id']}"
    await harness.client.put(url, json={**NEW_RULE, "name": "Renamed"}, headers=bearer(admin_token))
    await harness.client.delete(url, headers=bearer(admin_token))
    # Refused changes leave no record.
    await harness.client.post(RULES, json={**NEW_RULE, "threshold": 0}, headers=bearer(admin_token))

    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=("ALERT_RULE_CHANGED",), actor="admin"), PageRequest(size=100)
    )

    entries = sorted(page.items, key=lambda entry: entry.id)
    assert [(e.details or {}).get("action") for e in entries] == ["created", "updated", "deleted"]
    assert [(e.details or {}).get("rule") for e in entries] == [
        NEW_RULE["name"],
        "Renamed",
        "Renamed",
    ]
    assert all(e.outcome == "success" for e in entries)
    assert all(e.actor_login == "admin" for e in entries)
    assert all((e.details or {}).get("kind") == NEW_RULE["kind"] for e in entries)


# -- rules from the settings ----------------------------------------------------------------------


async def test_rules_from_settings_are_installed_and_override_defaults(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    """A configured rule with a default's name replaces that default; others are added."""
    settings = test_settings(
        tmp_path / "data",
        database_url=database_url,
        alert_rules=[
            {"name": DEFAULT_RULES[0].name, "kind": DEFAULT_RULES[0].kind, "threshold": 2},
            {"name": "Spraying, strict", "kind": "failed_logins_global", "threshold": 3,
             "window_seconds": 60, "severity": "critical", "enabled": False},
        ],
    )  # fmt: skip
    app = create_app(settings, clock=clock)

    async with app.router.lifespan_context(app):
        rules = {rule.name: rule for rule in await app.state.services.alert_rules.list()}

    assert set(rules) == {spec.name for spec in DEFAULT_RULES} | {"Spraying, strict"}
    assert rules[DEFAULT_RULES[0].name].threshold == 2
    assert rules[DEFAULT_RULES[0].name].window_seconds == 300
    strict = rules["Spraying, strict"]
    assert (strict.kind, strict.threshold, strict.window_seconds) == ("failed_logins_global", 3, 60)
    assert (strict.severity, strict.enabled) == ("critical", False)


async def test_restart_with_unchanged_configured_rules_records_no_change(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    """Configured rules are audited when they are installed or actually change; starting
    again with the same configuration records no ALERT_RULE_CHANGED (which would also fire
    "Administrative actions" at every start of every node)."""
    configured = {"name": "Spraying, strict", "kind": "failed_logins_global", "threshold": 3}
    settings = test_settings(tmp_path / "data", database_url=database_url, alert_rules=[configured])

    async def rule_changes() -> list[Any]:
        app = create_app(settings, clock=clock)
        async with app.router.lifespan_context(app):
            audit = app.state.services.audit
            await audit.flush()
            page = await audit.search(
                AuditFilter(event_types=("ALERT_RULE_CHANGED",)), PageRequest(size=100)
            )
        return [(entry.details or {}).get("action", "?") for entry in page.items]

    assert await rule_changes() == ["created"]
    clock.advance(minutes=5)
    assert await rule_changes() == ["created"]


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"kind": "failed_logins_on_mars"}, "kind"),
        ({"kind": "lockouts", "threshold": 0}, "threshold"),
        ({"kind": "lockouts", "window_seconds": 0}, "windowSeconds"),
        ({"kind": "lockouts", "window_seconds": MAX_WINDOW_SECONDS + 1}, "windowSeconds"),
        ({"kind": "lockouts", "severity": "apocalyptic"}, "severity"),
    ],
)
async def test_invalid_rule_in_settings_stops_the_start(
    tmp_path: Path, database_url: str, clock: FakeClock, rule: dict[str, Any], problem: str
) -> None:
    """An invalid configured rule makes the start fail with ConfigurationError naming it."""
    settings = test_settings(
        tmp_path / "data",
        database_url=database_url,
        alert_rules=[{"name": "Broken rule from config", **rule}],
    )
    app = create_app(settings, clock=clock)

    with pytest.raises(ConfigurationError) as raised:
        async with app.router.lifespan_context(app):
            pytest.fail("the application started with an invalid alert rule")

    assert "Broken rule from config" in str(raised.value)
    assert problem in str(raised.value)
    await app.state.services.db.close()


def test_unknown_field_in_a_configured_rule_is_refused(tmp_path: Path) -> None:
    """A typo in a configured rule's field name is refused when the settings load."""
    with pytest.raises(ValidationError, match="thresold"):
        test_settings(
            tmp_path / "data", alert_rules=[{"name": "Typo", "kind": "lockouts", "thresold": 2}]
        )


async def test_workers_starting_together_install_the_defaults_once(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    """The workers of `authgate serve --workers N` start at the same moment on an empty
    database: each finds no rule and installs the defaults. Regression: the one that lost
    the race failed its start on the name conflict, and uvicorn then stopped the server."""
    settings = test_settings(tmp_path / "data", database_url=database_url)
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        rules = app.state.services.alert_rules
        for rule in await rules.list():
            await rules.delete(rule.id)

        await asyncio.gather(rules.install_defaults(), rules.install_defaults())

        names = sorted(rule.name for rule in await rules.list())
    assert names == sorted(spec.name for spec in DEFAULT_RULES)


def test_the_evaluation_interval_comes_from_the_settings(tmp_path: Path) -> None:
    """AUTHGATE_ALERT_EVALUATION_INTERVAL_SECONDS reaches the engine (1 s by default)."""
    default = create_app(test_settings(tmp_path / "default"))
    assert default.state.services.alerts.poll_interval == 1.0
    quick = create_app(test_settings(tmp_path / "quick", alert_evaluation_interval_seconds=0.25))
    assert quick.state.services.alerts.poll_interval == 0.25


async def test_a_rule_read_can_be_sent_back_whole(harness: Harness, admin_token: str) -> None:
    """The robustness review: PUT of the DTO a GET returned was 422 for ``id``,
    ``createdAt`` and ``updatedAt``. They are dropped unread (another id or date changes
    nothing); any other unknown field is still refused (``colour`` above)."""
    rule = await create_rule(harness, admin_token, name="Round trip")
    sent = {**rule, "threshold": 7, "id": rule["id"] + 1000, "createdAt": "2001-01-01T00:00:00Z"}
    replaced = await harness.client.put(
        f"{RULES}/{rule['id']}", json=sent, headers=bearer(admin_token)
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["threshold"] == 7
    assert replaced.json()["id"] == rule["id"]
    assert replaced.json()["createdAt"] == rule["createdAt"]
