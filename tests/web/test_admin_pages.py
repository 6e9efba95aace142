"""The administrator pages without JavaScript: users, the audit trail (filters, paging,
export, chain verification), the key review and alerts; ordinary users get 403."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import text

from authgate.services.alerts.kinds import KINDS
from authgate.services.api_key_views import KeySpec
from authgate.services.audit.events import EventType
from authgate.services.audit_export import COLUMNS
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.paging import PageRequest
from authgate.web.admin import review as review_page
from tests.api.test_log_and_csv_injection import (
    AGENT_FORMULA,
    LOGIN_FORMULA,
    failed_login_with_formulas,
    failure_row,
)
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, Harness, bearer
from tests.web.conftest import (
    LOGIN,
    Browser,
    Element,
    OpenBrowser,
    html,
    main_text,
    notice_of,
    redirect_target,
    signed_in,
)

T = TypeVar("T")

USERS = "/settings/users"
AUDIT = "/settings/audit"
REVIEW = "/settings/keys-review"
ALERTS = "/settings/alerts"
NEW_PASSWORD = "a-password-set-by-the-admin"
DASH = "\N{EN DASH}"  # between the first and last row numbers shown: "Users 1-25 of 31"
WAIT_SECONDS = 10.0  # a safety net for background delivery, not a measured limit


async def eventually(check: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Retry ``check`` until it returns something truthy (background work)."""
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while True:
        result = await check()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.02)


async def user_state(harness: Harness) -> list[tuple[str, bool, tuple[str, ...]]]:
    page = await harness.services.users.list_users(PageRequest(page=0, size=100))
    return [(u.login, u.activated, tuple(sorted(u.authorities))) for u in page.items]


async def rule_state(harness: Harness) -> list[tuple[str, int, int, bool]]:
    rules = await harness.services.alert_rules.list()
    return [(r.name, r.threshold, r.window_seconds, r.enabled) for r in rules]


async def rule_named(harness: Harness, name: str) -> Any:
    return next((r for r in await harness.services.alert_rules.list() if r.name == name), None)


def row_of(page: Element, user_id: int) -> Element:
    return page.by_id(f"user-{user_id}")


def field_error(page: Element, field_id: str) -> str:
    """The error shown for ``field_id``, checking the field points at it."""
    field = page.by_id(field_id)
    assert field.attrs.get("aria-invalid") == "true", field.attrs
    assert f"{field_id}-error" in field.attrs["aria-describedby"].split()
    return page.by_id(f"{field_id}-error").text


def rule_form(name: str, **fields: str) -> dict[str, str]:
    form = {
        "name": name,
        "kind": "failed_logins_per_ip",
        "threshold": "3",
        "window": "10",
        "window_unit": "minutes",
        "severity": "high",
        "enabled": "on",
    }
    form.update(fields)
    return form


# -- access -------------------------------------------------------------------------------

ADMIN_GETS = [
    USERS,
    AUDIT,
    f"{AUDIT}/export?format=csv",
    f"{AUDIT}/export?format=json",
    REVIEW,
    ALERTS,
]
ADMIN_POSTS: list[tuple[str, Mapping[str, str | list[str]]]] = [
    (USERS, {"login": "mallory", "email": "m@example.com", "password": NEW_PASSWORD,
             "roles": ["ROLE_ADMIN", "ROLE_USER"]}),
    (f"{USERS}/alice/edit", {"roles": ["ROLE_ADMIN", "ROLE_USER"], "activated": "on"}),
    (f"{USERS}/admin/edit", {"roles": ["ROLE_USER"]}),
    (f"{USERS}/admin/password", {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}),
    (f"{USERS}/admin/delete", {"confirm": "on"}),
    (f"{AUDIT}/verify", {}),
    (f"{ALERTS}/rules", rule_form("sneaky")),
    (f"{ALERTS}/rules/1/edit", rule_form("renamed", enabled="")),
    (f"{ALERTS}/rules/1/enabled", {"enabled": "0"}),
    (f"{ALERTS}/rules/1/delete", {"confirm": "on"}),
    (f"{ALERTS}/test", {}),
]  # fmt: skip


@pytest.mark.parametrize("url", ADMIN_GETS)
async def test_ordinary_users_get_the_403_page_for_admin_pages(
    admin_id: int, alice: Browser, url: str
) -> None:
    """Every administrator page answers an ordinary user with the HTML 403 page."""
    response = await alice.get(url)

    assert response.status_code == 403
    assert "This page is for administrators only." in main_text(response)
    assert "text/html" in response.headers["content-type"]


@pytest.mark.parametrize(("url", "form"), ADMIN_POSTS, ids=[url for url, _ in ADMIN_POSTS])
async def test_ordinary_users_get_403_for_admin_forms_and_change_nothing(
    harness: Harness, admin_id: int, alice: Browser, url: str, form: dict[str, Any]
) -> None:
    """Every administrator form, even with a valid CSRF token, answers an ordinary user
    with 403 and changes no user, password or rule."""
    users_before = await user_state(harness)
    rules_before = await rule_state(harness)

    response = await alice.post(url, form)

    assert response.status_code == 403
    assert "This page is for administrators only." in main_text(response)
    assert await user_state(harness) == users_before
    assert await rule_state(harness) == rules_before
    await harness.login("admin", ADMIN_PASSWORD)  # the admin's password is unchanged


@pytest.mark.parametrize("url", [USERS, AUDIT, REVIEW, ALERTS])
async def test_visitors_are_sent_to_sign_in(open_browser: OpenBrowser, url: str) -> None:
    """Without a session an administrator page redirects to the login page."""
    browser = await open_browser()

    response = await browser.get(url)

    assert redirect_target(response) == f"{LOGIN}?next={url}"


async def test_admin_forms_need_the_csrf_token(harness: Harness, admin: Browser) -> None:
    """An administrator's form without the CSRF token is refused (403), nothing made."""
    before = await user_state(harness)

    response = await admin.post(
        USERS,
        {"login": "bob", "email": "bob@example.com", "password": NEW_PASSWORD,
         "roles": "ROLE_USER"},
        csrf=False,
    )  # fmt: skip

    assert response.status_code == 403
    assert "Form refused" in main_text(response)
    assert await user_state(harness) == before


# -- users --------------------------------------------------------------------------------


async def test_users_table_lists_every_user(
    harness: Harness, admin: Browser, admin_id: int, alice_id: int
) -> None:
    """The table shows login, e-mail, roles, active state, second factor and creation date
    per user."""
    page = html(await admin.get(USERS))

    alice = row_of(page, alice_id)
    cells = [cell.text for cell in alice.find_all("td")]
    assert alice.find("th").text == "alice"
    assert cells[:3] == ["alice@example.com", "User", "active"]
    assert cells[3] == "none"  # no second factor
    assert cells[4] == harness.clock().strftime("%Y-%m-%d")
    assert row_of(page, admin_id).find("td", data_label="Roles").text == "Administrator, User"
    assert row_of(page, alice_id).find("form", id=f"user-{alice_id}-delete")


async def test_admin_creates_a_user_who_can_sign_in(
    harness: Harness, open_browser: OpenBrowser, admin: Browser
) -> None:
    """The create form makes a user with the chosen roles, who can then sign in."""
    response = await admin.post(
        USERS,
        {"login": "Bob", "email": "bob@example.com", "password": NEW_PASSWORD,
         "roles": ["ROLE_USER"]},
    )  # fmt: skip

    assert redirect_target(response).startswith(USERS)
    assert notice_of(response) == "User bob created."
    bob = await harness.services.users.get_user("bob")
    assert bob.authorities == frozenset({"ROLE_USER"})
    page = html(await admin.get(USERS))
    assert row_of(page, bob.id).find("th").text == "bob"
    await signed_in(open_browser, "bob", NEW_PASSWORD)


@pytest.mark.parametrize(
    ("fields", "status", "field", "message"),
    [
        ({"login": "alice"}, 409, "create-login", "Login name already used!"),
        ({"email": "alice@example.com"}, 409, "create-email", "Email is already in use!"),
        ({"login": "no spaces"}, 400, "create-login", "Login must be 1-50 characters"),
        ({"email": "not-an-address"}, 400, "create-email", "Email must be a valid address"),
        ({"password": "short"}, 400, "create-password", "Password must be at least 12"),
        ({"roles": []}, 400, "create-roles", "At least one authority is required."),
    ],
    ids=["login-taken", "email-taken", "bad-login", "bad-email", "short-password", "no-role"],
)
async def test_refused_new_user_shows_the_message_at_the_field_and_keeps_the_values(
    harness: Harness,
    admin: Browser,
    alice_id: int,
    fields: dict[str, Any],
    status: int,
    field: str,
    message: str,
) -> None:
    """A refused user is shown again with the service's message next to the field (409
    for a conflict, 400 for invalid input: the REST users routes' statuses), the values
    kept and the password not."""
    form: dict[str, Any] = {
        "login": "carol",
        "email": "carol@example.com",
        "password": NEW_PASSWORD,
        "roles": ["ROLE_ADMIN", "ROLE_USER"],
        **fields,
    }
    before = await user_state(harness)

    response = await admin.post(USERS, form)

    assert response.status_code == status
    page = html(response)
    if field == "create-roles":
        assert message in page.by_id("create-roles-error").text
    else:
        assert message in field_error(page, field)
    assert message in page.find("div", class_="error-summary").text
    create = page.find("form", action=USERS)
    assert create.find("input", name="login").attrs["value"] == form["login"]
    assert create.find("input", name="email").attrs["value"] == form["email"]
    assert create.checked("roles") == set(form["roles"])
    assert "value" not in create.find("input", name="password").attrs
    assert await user_state(harness) == before
    # The REST API's status for the same refusal.
    token = await harness.login("admin", ADMIN_PASSWORD)
    body = {**form, "authorities": form["roles"], "activated": True}
    rest = await harness.client.post("/api/users", json=body, headers=bearer(token))
    assert rest.status_code == status


async def test_admin_changes_roles_and_deactivates_a_user(
    harness: Harness, admin: Browser, alice: Browser, alice_id: int
) -> None:
    """The edit form sets the roles and the active state; deactivation ends the user's
    sessions."""
    response = await admin.post(f"{USERS}/alice/edit", {"roles": ["ROLE_ADMIN", "ROLE_USER"]})

    assert notice_of(response) == "Changes to alice saved."
    changed = await harness.services.users.get_user("alice")
    assert changed.authorities == frozenset({"ROLE_ADMIN", "ROLE_USER"})
    assert changed.activated is False
    assert redirect_target(await alice.get("/settings/account")).startswith(LOGIN)
    row = row_of(html(await admin.get(USERS)), alice_id)
    assert row.find("td", data_label="Active").text == "deactivated"
    assert row.find("form", id=f"user-{alice_id}-edit").checked("activated") == set()

    await admin.post(f"{USERS}/alice/edit", {"roles": ["ROLE_USER"], "activated": "on"})
    assert (await harness.services.users.get_user("alice")).activated is True


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"roles": ["ROLE_USER"], "activated": "on"},
         "At least one active administrator must remain."),
        ({"roles": ["ROLE_ADMIN", "ROLE_USER"]}, "You cannot deactivate your own account."),
    ],
    ids=["last-admin", "self-deactivation"],
)  # fmt: skip
async def test_refused_user_change_is_shown_at_that_users_form(
    harness: Harness, admin: Browser, admin_id: int, alice_id: int, form: dict[str, Any],
    message: str,
) -> None:  # fmt: skip
    """A conflict (the last administrator, deactivating oneself) is a 409 with the
    message inside that user's open edit form, which keeps the submitted choices."""
    before = await user_state(harness)

    response = await admin.post(f"{USERS}/admin/edit", form)

    assert response.status_code == 409
    page = html(response)
    row = row_of(page, admin_id)
    assert "open" in row.find("details").attrs
    edit = row.find("form", id=f"user-{admin_id}-edit")
    assert message in edit.text
    assert edit.checked("roles") == set(form["roles"])
    assert edit.checked("activated") == ({"on"} if "activated" in form else set())
    assert message not in row_of(page, alice_id).text
    assert await user_state(harness) == before


async def test_admin_resets_a_password(
    harness: Harness, open_browser: OpenBrowser, admin: Browser, alice: Browser
) -> None:
    """A reset sets the new password and ends the user's sessions."""
    response = await admin.post(
        f"{USERS}/alice/password",
        {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD},
    )

    assert notice_of(response) == "Password of alice reset. Their sessions have ended."
    assert redirect_target(await alice.get("/settings/account")).startswith(LOGIN)
    harness.clock.advance(milliseconds=1)
    browser = await open_browser()
    assert (await browser.sign_in("alice", USER_PASSWORD)).status_code == 401
    assert (await browser.sign_in("alice", NEW_PASSWORD)).status_code == 303


@pytest.mark.parametrize(
    ("new", "confirm", "field", "message"),
    [
        (NEW_PASSWORD, NEW_PASSWORD + "!", "confirm_password", "The passwords differ."),
        ("short", "short", "new_password", "Password must be at least 12 characters long."),
    ],
    ids=["differ", "short"],
)
async def test_refused_password_reset_is_shown_at_the_field(
    harness: Harness,
    admin: Browser,
    alice_id: int,
    new: str,
    confirm: str,
    field: str,
    message: str,
) -> None:
    """A refused reset is a 400 with the message at that user's field; nothing changes."""
    response = await admin.post(
        f"{USERS}/alice/password", {"new_password": new, "confirm_password": confirm}
    )

    assert response.status_code == 400
    assert message in field_error(html(response), f"user-{alice_id}-password-{field}")
    await harness.login("alice", USER_PASSWORD)


async def test_admin_deletes_a_user(
    harness: Harness, admin: Browser, alice: Browser, alice_id: int
) -> None:
    """The delete form removes the user; their session stops working."""
    page = html(await admin.get(USERS))
    delete = page.by_id(f"user-{alice_id}-delete")
    assert "alice" in delete.attrs["data-confirm"]
    assert "required" in delete.find("input", name="confirm").attrs

    response = await admin.post(f"{USERS}/alice/delete", {"confirm": "on"})

    assert notice_of(response) == "User alice deleted."
    assert "alice" not in [login for login, _, _ in await user_state(harness)]
    assert redirect_target(await alice.get("/settings/account")).startswith(LOGIN)
    assert (await admin.post(f"{USERS}/alice/delete", {"confirm": "on"})).status_code == 404


@pytest.mark.parametrize(
    ("other_admin", "message"),
    [(True, "You cannot delete your own account."), (False, "Cannot delete the last admin user.")],
    ids=["self", "self-and-last-admin"],
)
async def test_admin_cannot_delete_their_own_account(
    harness: Harness, admin: Browser, admin_id: int, other_admin: bool, message: str
) -> None:
    """Deleting oneself is a 409 shown at one's own row; the form is not even offered.
    The only admin is told that the last admin stays (checked first, as UTMStack does)."""
    if other_admin:
        await harness.create_user("root2", admin=True)
    assert html(await admin.get(USERS)).by_id(f"user-{admin_id}-delete").find_all("button") == []

    response = await admin.post(f"{USERS}/admin/delete", {"confirm": "on"})

    assert response.status_code == 409
    form = html(response).by_id(f"user-{admin_id}-delete")
    assert message in form.text
    assert "admin" in [login for login, _, _ in await user_state(harness)]


async def test_users_are_paged(harness: Harness, admin: Browser) -> None:
    """With more users than a page holds, the table pages with links and "X of N"."""
    for number in range(30):
        await harness.create_user(f"user{number:02d}")

    first = html(await admin.get(USERS, size="25"))
    pager = first.find("nav", class_="pager")
    assert f"Users 1{DASH}25 of 31 · page 1 of 2" in pager.text
    second = html(await admin.get(pager.find("a", rel="next").attrs["href"]))

    shown = [row.find("th").text for row in first.find("tbody").find_all("tr")]
    shown += [row.find("th").text for row in second.find("tbody").find_all("tr")]
    assert len(shown) == 31
    assert sorted(shown) == shown
    assert f"Users 26{DASH}31 of 31 · page 2 of 2" in second.find("nav", class_="pager").text


async def test_the_user_being_managed_is_shown_even_when_on_another_page(
    harness: Harness, admin: Browser
) -> None:
    """With ``?edit=<login>`` that user's forms are shown open, first, whatever the page."""
    for number in range(30):
        await harness.create_user(f"user{number:02d}")

    page = html(await admin.get(USERS, size="25", edit="User29"))

    rows = page.find("tbody").find_all("tr")
    assert rows[0].find("th").text == "user29"
    assert "open" in rows[0].find("details").attrs
    assert [row for row in rows[1:] if "open" in row.find("details").attrs] == []


# -- audit trail --------------------------------------------------------------------------


async def audit_trail(harness: Harness) -> None:
    """Two failed logins of alice, one success of admin, 40 admin actions; flushed."""
    for _ in range(2):
        failed = await harness.client.post(
            "/api/authenticate", json={"username": "alice", "password": "wrong-password-x"}
        )
        assert failed.status_code == 401
    await harness.login("admin", ADMIN_PASSWORD)
    for number in range(40):
        harness.services.audit.record(EventType.USER_UPDATED, "success", details={"n": number})
    await harness.services.audit.flush()


def audit_rows(page: Element) -> list[dict[str, str]]:
    table = page.find("table", class_="audit")
    return [
        {cell.attrs["data-label"]: cell.text for cell in row.find_all("td")}
        for row in table.find("tbody").find_all("tr")
    ]


async def test_audit_table_filters_by_type_outcome_and_actor(
    harness: Harness, admin: Browser, alice_id: int
) -> None:
    """The filter form narrows the table; the form shows the chosen filters."""
    await audit_trail(harness)

    failures = html(await admin.get(AUDIT, type="AUTH_FAILURE"))
    rows = audit_rows(failures)
    assert len(rows) == 2
    assert {row["Type"] for row in rows} == {"AUTH_FAILURE"}
    assert {row["Outcome"] for row in rows} == {"failure"}
    assert {row["Actor"] for row in rows} == {"alice"}
    assert {row["Address"] for row in rows} == {"127.0.0.1"}
    assert {row["Path"] for row in rows} == {"/api/authenticate"}
    assert failures.by_id("f-type").find("option", selected=True).text == "AUTH_FAILURE"

    by_actor = audit_rows(html(await admin.get(AUDIT, actor="alice", outcome="failure")))
    assert len(by_actor) == 2
    today = harness.clock().strftime("%Y-%m-%d")
    tomorrow = (harness.clock() + timedelta(days=1)).strftime("%Y-%m-%d")
    in_range = audit_rows(
        html(await admin.get(AUDIT, **{"from": today, "to": today, "ip": "127.0.0.1"}))
    )
    # The logins over HTTP: two failures and one success by API, the admin's by the form.
    assert sorted((row["Type"], row["Path"]) for row in in_range) == [
        ("AUTH_FAILURE", "/api/authenticate"),
        ("AUTH_FAILURE", "/api/authenticate"),
        ("AUTH_SUCCESS", "/api/authenticate"),
        ("AUTH_SUCCESS", "/settings/login"),
    ]
    later = html(await admin.get(AUDIT, **{"from": tomorrow}))
    assert later.find_all("table", class_="audit") == []
    assert "No record matches these filters." in later.find("main").text


async def test_audit_table_pages_newest_first(harness: Harness, admin: Browser) -> None:
    """The table shows the newest records first, in pages with links and "X of N"."""
    await audit_trail(harness)
    total = (await harness.services.audit.search(AuditFilter(), PageRequest(size=1))).total

    first = html(await admin.get(AUDIT, size="25"))
    pager = first.find("nav", class_="pager")
    assert f"Records 1{DASH}25 of {total} · page 1 of {-(-total // 25)}" in pager.text
    first_ids = [int(r.attrs["data-audit-id"]) for r in first.find_all("tr", data_audit_id=True)]
    second = html(await admin.get(pager.find("a", rel="next").attrs["href"]))
    second_ids = [int(r.attrs["data-audit-id"]) for r in second.find_all("tr", data_audit_id=True)]
    assert first_ids == sorted(first_ids, reverse=True)
    assert len(first_ids) == 25
    assert max(second_ids) < min(first_ids)


async def test_invalid_audit_filters_are_shown_at_their_fields(admin: Browser) -> None:
    """An address or date that cannot be read is a 422 with the message at the field."""
    response = await admin.get(AUDIT, ip="10.0.0.999", to="31/12/2024", type="NO_SUCH_TYPE")

    assert response.status_code == 422
    page = html(response)
    assert "Enter an IPv4 or IPv6 address" in field_error(page, "f-ip")
    assert "Enter a date as YYYY-MM-DD." in field_error(page, "f-to")
    assert "Choose an event type" in field_error(page, "f-type")
    assert page.by_id("f-ip").attrs["value"] == "10.0.0.999"


async def test_audit_export_as_csv_and_json_lines_keeps_the_filters(
    harness: Harness, admin: Browser
) -> None:
    """The page's export links carry its filters; CSV and JSON Lines download with the
    session cookie and parse into the matching records."""
    await audit_trail(harness)
    page = html(await admin.get(AUDIT, type="AUTH_FAILURE", actor="alice"))
    links = {a.text: a.attrs["href"] for a in page.find("p", class_="exports").find_all("a")}

    as_csv = await admin.get(links["CSV"])
    as_json = await admin.get(links["JSON Lines"])

    assert as_csv.status_code == 200
    assert as_csv.headers["content-disposition"] == 'attachment; filename="audit-events.csv"'
    assert as_csv.headers["content-type"].startswith("text/csv")
    records = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert tuple(records[0]) == COLUMNS
    assert [(r["type"], r["actor"]) for r in records] == [("AUTH_FAILURE", "alice")] * 2
    assert as_json.headers["content-disposition"] == 'attachment; filename="audit-events.jsonl"'
    lines = [json.loads(line) for line in as_json.text.splitlines()]
    assert [line["id"] for line in lines] == [int(r["id"]) for r in records]
    assert {line["type"] for line in lines} == {"AUTH_FAILURE"}

    everything = await admin.get(f"{AUDIT}/export", format="csv")
    assert len(list(csv.DictReader(io.StringIO(everything.text)))) > len(records)
    refused = await admin.get(f"{AUDIT}/export", format="xml")
    assert refused.status_code == 422


async def test_audit_csv_export_neutralises_formulas(harness: Harness, admin: Browser) -> None:
    """A typed login ``=HYPERLINK(...)`` and a user agent ``@SUM(...)`` reach the page's
    CSV export with a leading quote (the REST export's writer, shared)."""
    await failed_login_with_formulas(harness)
    response = await admin.get(f"{AUDIT}/export", format="csv")
    assert response.status_code == 200
    row = failure_row(response.text)
    assert row["actor"] == "'" + LOGIN_FORMULA.lower()
    assert row["userAgent"] == "'" + AGENT_FORMULA


async def test_verify_reports_an_intact_chain(harness: Harness, admin: Browser) -> None:
    """The "Verify chain" button reports an untouched trail as intact with the records checked."""
    await audit_trail(harness)

    response = await admin.post(f"{AUDIT}/verify")

    assert response.status_code == 200
    result = html(response).by_id("verification")
    assert result.attrs["role"] == "status"
    assert result.text.startswith("The chain is intact:")


async def test_verify_names_the_first_changed_record(harness: Harness, admin: Browser) -> None:
    """After a record is edited in the database, "Verify chain" names it as broken."""
    await audit_trail(harness)
    entries = await harness.services.audit.search(AuditFilter(), PageRequest(size=100))
    victim = sorted(entry.id for entry in entries.items)[5]
    async with harness.services.db.transaction() as session:
        await session.execute(
            text("UPDATE audit_events SET reason = 'edited' WHERE id = :id"), {"id": victim}
        )

    response = await admin.post(f"{AUDIT}/verify")

    result = html(response).by_id("verification")
    assert result.attrs["role"] == "alert"
    assert f"The chain is broken at record {victim} (forged)" in result.text


# -- key review ---------------------------------------------------------------------------


async def test_key_review_lists_keys_of_every_user_by_section(
    harness: Harness, open_browser: OpenBrowser, admin_id: int, alice_id: int
) -> None:
    """The review shows unused, unrestricted, soon-expiring and broad keys of all users
    with their owners and links to the key pages (which an admin may open)."""
    keys = harness.services.api_keys
    start = harness.clock()
    idle = await keys.create(
        alice_id,
        KeySpec(name="idle-reader", allowed_networks=["10.0.0.0/8"], scopes=frozenset({"read"}),
                expires_at=start + timedelta(days=300)),
    )  # fmt: skip
    harness.clock.advance(days=40)
    broad = await keys.create(
        alice_id,
        KeySpec(name="wide-open", allowed_networks=[], scopes=frozenset({"read", "write"}),
                expires_at=harness.clock() + timedelta(days=10)),
    )  # fmt: skip
    admin = await signed_in(open_browser, "admin", ADMIN_PASSWORD)

    page = html(await admin.get(REVIEW))

    def names(section: str) -> list[str]:
        rows = page.by_id(section).find_all("tr", data_key_id=True)
        return [row.find("td", data_label="Name").find("a").text.split(" of ")[0] for row in rows]

    assert names("unused") == ["idle-reader"]
    assert names("unrestricted") == ["wide-open"]
    assert names("expiring") == ["wide-open"]
    assert names("broad") == ["wide-open"]
    row = page.by_id("expiring").find("tr", data_key_id=broad.view.public_id)
    assert row.find("td", data_label="Owner").text == "alice"
    assert row.find("td", data_label="Status").text == "expiring"
    assert row.find("td", data_label="Last used").text == "never used"
    link = row.find("a").attrs["href"]
    assert link == f"/settings/api-keys/{broad.view.public_id}"
    detail = await admin.get(link)
    assert detail.status_code == 200
    assert "Revoke" in main_text(detail)

    narrower = html(await admin.get(REVIEW, expiringDays="5", unusedDays="50"))
    assert narrower.by_id("expiring").find_all("tr", data_key_id=True) == []
    assert narrower.by_id("unused").find_all("tr", data_key_id=True) == []
    assert narrower.by_id("expiringDays").attrs["value"] == "5"
    assert idle.view.public_id != broad.view.public_id


async def test_key_review_says_when_a_section_lists_only_its_first_keys(
    harness: Harness,
    open_browser: OpenBrowser,
    admin_id: int,
    alice_id: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the review's limit a section shows its oldest keys, the count of all of
    them, and says so; a section within the limit says nothing of the kind."""
    monkeypatch.setattr(review_page, "LISTED", 2)
    keys = harness.services.api_keys
    for number in range(3):
        await keys.create(
            alice_id,
            KeySpec(name=f"open-{number}", allowed_networks=[], scopes=frozenset({"read"}),
                    expires_at=harness.clock() + timedelta(days=300)),
        )  # fmt: skip
    admin = await signed_in(open_browser, "admin", ADMIN_PASSWORD)

    page = html(await admin.get(REVIEW))

    section = page.by_id("unrestricted")
    assert len(section.find_all("tr", data_key_id=True)) == 2
    assert section.find("span", class_="count").text == "(3)"
    assert "Showing the first 2 of 3 keys" in section.find("p", data_truncated=True).text
    assert page.by_id("broad").find_all("p", data_truncated=True) == []


@pytest.mark.parametrize("days", ["0", "abc", "99999999999999999999999"])
async def test_key_review_refuses_unreadable_days(admin: Browser, days: str) -> None:
    """Days that are not a whole number from 1 to 3650 are a 422 at the field."""
    response = await admin.get(REVIEW, unusedDays=days)

    assert response.status_code == 422
    assert "whole number of days" in field_error(html(response), "unusedDays")


# -- alerts -------------------------------------------------------------------------------


async def test_admin_creates_edits_disables_and_deletes_a_rule(
    harness: Harness, admin: Browser
) -> None:
    """A rule made with the create form is listed; the toggle disables it, the edit
    form changes it and the delete form removes it."""
    created = await admin.post(f"{ALERTS}/rules", rule_form("Too many failures"))

    assert notice_of(created) == "Alert rule Too many failures created."
    rule = await rule_named(harness, "Too many failures")
    assert (rule.kind, rule.threshold, rule.window_seconds, rule.severity, rule.enabled) == (
        "failed_logins_per_ip", 3, 600, "high", True,
    )  # fmt: skip
    row = html(await admin.get(ALERTS)).by_id(f"rule-{rule.id}")
    assert row.find("td", data_label="Window").text == "10 minutes"
    assert row.find("td", data_label="Enabled").text == "enabled"

    disabled = await admin.post(f"{ALERTS}/rules/{rule.id}/enabled", {"enabled": "0"})
    assert notice_of(disabled) == "Alert rule Too many failures disabled."
    assert (await rule_named(harness, "Too many failures")).enabled is False
    row = html(await admin.get(ALERTS)).by_id(f"rule-{rule.id}")
    assert row.find("td", data_label="Enabled").text == "disabled"
    assert row.find("form", action=f"{ALERTS}/rules/{rule.id}/enabled").inputs()["enabled"] == "1"

    edited = await admin.post(
        f"{ALERTS}/rules/{rule.id}/edit",
        rule_form("Too many failures", threshold="7", window="2", window_unit="hours"),
    )
    assert notice_of(edited) == "Alert rule Too many failures saved."
    changed = await rule_named(harness, "Too many failures")
    assert (changed.threshold, changed.window_seconds, changed.enabled) == (7, 7200, True)

    deleted = await admin.post(f"{ALERTS}/rules/{rule.id}/delete", {"confirm": "on"})
    assert notice_of(deleted) == "Alert rule Too many failures deleted."
    assert await rule_named(harness, "Too many failures") is None


@pytest.mark.parametrize(
    ("fields", "status", "field", "message"),
    [
        ({"threshold": "0"}, 422, "threshold", "The threshold must be at least 1."),
        ({"threshold": "many"}, 422, "threshold", "whole number"),
        ({"window": "367", "window_unit": "days"}, 422, "window", "between 1 second and 366"),
        ({"name": " "}, 422, "name", "Name is required."),
        ({"kind": "moon_phase"}, 422, "kind", "Unknown kind"),
        ({"name": "Lockouts"}, 409, "name", "An alert rule with this name already exists."),
    ],
    ids=["threshold", "not-a-number", "window", "name", "kind", "name-taken"],
)
async def test_refused_rule_shows_the_message_at_the_field(
    harness: Harness, admin: Browser, fields: dict[str, str], status: int, field: str,
    message: str,
) -> None:  # fmt: skip
    """A refused new rule is shown again with the message at its field and the values
    kept; no rule is made."""
    before = await rule_state(harness)

    response = await admin.post(f"{ALERTS}/rules", {**rule_form("Night watch"), **fields})

    assert response.status_code == status
    page = html(response)
    assert message in field_error(page, f"create-{field}")
    name = page.find("form", action=f"{ALERTS}/rules").find("input", name="name")
    assert name.attrs["value"] == fields.get("name", "Night watch").strip()
    assert await rule_state(harness) == before


async def test_every_problem_of_a_rule_form_is_shown_at_once(
    harness: Harness, admin: Browser
) -> None:
    """An unreadable number no longer hides the other fields' problems (the UI review
    sent an empty name, threshold 0 and window "abc" and was told of the window only)."""
    response = await admin.post(
        f"{ALERTS}/rules", {**rule_form(" "), "threshold": "0", "window": "abc"}
    )
    assert response.status_code == 422
    page = html(response)
    assert "Name is required." in field_error(page, "create-name")
    assert "at least 1" in field_error(page, "create-threshold")
    assert "whole number" in field_error(page, "create-window")


async def test_refused_rule_edit_is_shown_in_that_rules_form(
    harness: Harness, admin: Browser
) -> None:
    """A refused edit opens that rule's form with the message and the typed values."""
    rule = await rule_named(harness, "Lockouts")

    response = await admin.post(
        f"{ALERTS}/rules/{rule.id}/edit", rule_form("Lockouts", threshold="-2")
    )

    assert response.status_code == 422
    page = html(response)
    assert "open" in page.by_id(f"rule-{rule.id}").find("details").attrs
    error = field_error(page, f"rule-{rule.id}-edit-threshold")
    assert error == "The threshold must be at least 1."
    assert page.by_id(f"rule-{rule.id}-edit-threshold").attrs["value"] == "-2"
    assert (await rule_named(harness, "Lockouts")).threshold == rule.threshold


async def test_kinds_are_offered_with_an_explanation(admin: Browser) -> None:
    """The create form's kind list offers every kind with a short explanation."""
    options = html(await admin.get(ALERTS)).by_id("create-kind").find_all("option")

    assert [option.attrs["value"] for option in options] == list(KINDS)
    assert all(len(option.text) > len(option.attrs["value"]) + 10 for option in options)


async def test_recent_alerts_are_listed(harness: Harness, admin: Browser) -> None:
    """A fired alert appears in the recent alerts table with its rule and severity."""
    created = await admin.post(
        USERS,
        {"login": "dave", "email": "dave@example.com", "password": NEW_PASSWORD,
         "roles": "ROLE_USER"},
    )  # fmt: skip
    assert created.status_code == 303

    async def fired() -> Any:
        await harness.services.audit.flush()
        await harness.services.alerts.evaluate_new_events()
        alerts = (await harness.services.alerts.recent(PageRequest(size=10))).items
        return [alert for alert in alerts if alert.subject == "actor:admin"]

    await eventually(fired, "the administrative action alert")
    table = html(await admin.get(ALERTS)).by_id("recent").find("table")
    rows = [
        {cell.attrs["data-label"]: cell.text for cell in row.find_all("td")}
        for row in table.find("tbody").find_all("tr")
    ]
    by_admin = [row for row in rows if row["Subject"] == "actor:admin"]
    assert len(by_admin) == 1
    assert by_admin[0]["Rule"] == "Administrative actions"
    assert by_admin[0]["Severity"] == "low"
    assert "admin" in by_admin[0]["Summary"]


async def test_send_test_alert_reaches_the_sinks(
    harness: Harness, admin: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    """The "Send test alert" button queues a test alert for every sink; the log sink delivers it."""
    caplog.set_level(logging.WARNING, logger="authgate.alerts")

    response = await admin.post(f"{ALERTS}/test")

    assert notice_of(response) == "A test alert was queued for 1 alert sink."

    async def logged() -> list[str]:
        return [r.getMessage() for r in caplog.records if "Test alert" in r.getMessage()]

    assert len(await eventually(logged, "the test alert in the log")) == 1
    assert (await harness.services.alerts.recent(PageRequest(size=10))).items == []


# -- robustness ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("GET", f"{AUDIT}?page=abc&size=-5&from=2024-13-40&outcome=maybe", 422),
        ("GET", f"{AUDIT}?page=999999999&size=25", 200),
        ("GET", f"{AUDIT}?from=0001-01-01&to=9999-12-31", 422),
        ("GET", f"{AUDIT}/export?format=csv&to=9999-12-31", 422),
        ("GET", f"{AUDIT}?page=99999999999999999999999", 200),
        ("GET", f"{USERS}?page=0&size=100000000000000000000000", 200),
        ("POST", f"{USERS}/nobody/edit", 404),
        ("POST", f"{USERS}/nobody/password", 404),
        ("POST", f"{USERS}/nobody/delete", 404),
        ("POST", f"{ALERTS}/rules/999999/edit", 404),
        ("POST", f"{ALERTS}/rules/999999/enabled", 404),
        ("POST", f"{ALERTS}/rules/999999/delete", 404),
        ("POST", f"{ALERTS}/rules/{2**64}/enabled", 404),
        ("POST", f"{ALERTS}/rules/{2**64}/edit", 404),
    ],
)
async def test_odd_requests_get_html_answers_without_stack_traces(
    admin: Browser, method: str, url: str, status: int
) -> None:
    """Nonsense paging, unknown users and rules answer with an HTML page (the browser
    helper checks every response for stack traces)."""
    forms: dict[str, dict[str, str]] = {
        "rules": rule_form("x"),
        "edit": {"roles": "ROLE_USER"},
        "password": {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD},
    }
    if method == "GET":
        response = await admin.get(url)
    else:
        kind = "rules" if "/rules/" in url else url.rsplit("/", 1)[1]
        response = await admin.post(url, forms.get(kind, {}))

    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")


async def test_admin_pages_are_not_cached(admin: Browser) -> None:
    """Every admin page and export is sent with Cache-Control: no-store."""
    for url in (USERS, AUDIT, f"{AUDIT}/export?format=csv", REVIEW, ALERTS):
        response = await admin.get(url)
        assert response.headers["cache-control"] == "no-store", url


async def test_api_tokens_of_admins_do_not_open_pages(harness: Harness, admin_id: int) -> None:
    """Pages need the session cookie: a bearer token alone is sent to the login page."""
    token = await harness.login("admin", ADMIN_PASSWORD)

    response = await harness.client.get(USERS, headers=bearer(token))

    assert response.status_code == 303
    assert response.headers["location"].startswith(LOGIN)
