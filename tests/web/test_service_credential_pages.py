"""Settings > Service credentials (issue 17): administrators create, rotate and revoke
what other services send in X-Internal-Key; the credential is shown once."""

from __future__ import annotations

from authgate.storage.audit_repository import AuditFilter
from authgate.storage.paging import PageRequest
from tests.conftest import Harness
from tests.web.conftest import Browser, html, main_text, redirect_target

PAGE = "/settings/service-credentials"


# The internal key check's answers for an unknown API key: the credential accepted (the
# key is what it refuses), or the credential refused. Both are 401, as in v12.
ACCEPTED = (401, {"error": "invalid api key"})
REFUSED = (401, {"error": "invalid internal key"})


async def internal_status(harness: Harness, credential: str) -> tuple[int, object]:
    """The internal key check's answer with ``credential``: ACCEPTED or REFUSED."""
    response = await harness.client.post(
        "/api/v1/api-keys/authenticate",
        json={"apiKey": "agk_unknown", "clientIp": "192.0.2.1"},
        headers={"X-Internal-Key": credential},
    )
    return response.status_code, response.json()


async def create(admin: Browser, name: str = "log-input") -> str:
    response = await admin.post(PAGE, {"name": name, "endpoints": ["api-keys.authenticate"]})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return html(response).by_id("new-credential").text


async def test_admin_creates_a_credential_shown_once(harness: Harness, admin: Browser) -> None:
    """The created credential is on the answer page only (no-store), works at once, and
    the creation is audited with the administrator as actor."""
    credential = await create(admin)
    assert credential.startswith("ags_")
    assert await internal_status(harness, credential) == ACCEPTED
    listing = await admin.get(PAGE)
    assert listing.status_code == 200
    assert "log-input" in main_text(listing)
    assert credential not in listing.text
    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=("SERVICE_CREDENTIAL_CREATED",)), PageRequest(size=10)
    )
    assert [entry.actor_login for entry in page.items] == ["admin"]


async def test_refused_input_is_shown_at_the_field(harness: Harness, admin: Browser) -> None:
    """No endpoint ticked: 422; a name in use: 409; the values entered are kept."""
    no_endpoint = await admin.post(PAGE, {"name": "log-input"})
    assert no_endpoint.status_code == 422
    assert "Allow at least one internal endpoint." in main_text(no_endpoint)
    await create(admin)
    duplicate = await admin.post(PAGE, {"name": "log-input", "endpoints": "api-keys.authenticate"})
    assert duplicate.status_code == 409
    assert "already exists" in main_text(duplicate)
    assert html(duplicate).by_id("new-name").attrs["value"] == "log-input"


async def test_admin_rotates_and_revokes(harness: Harness, admin: Browser) -> None:
    """Rotating shows the new secret once (the old one stops without a grace period);
    revoking refuses the credential's next call; an unknown id is the 404 page."""
    credential = await create(admin)
    (row,) = await harness.services.service_credentials.list_all()
    rotated = await admin.post(f"{PAGE}/{row.id}/rotate", {"grace_seconds": "0"})
    assert rotated.status_code == 200
    new = html(rotated).by_id("new-credential").text
    assert await internal_status(harness, credential) == REFUSED
    assert await internal_status(harness, new) == ACCEPTED
    revoked = await admin.post(f"{PAGE}/{row.id}/revoke")
    assert redirect_target(revoked).startswith(PAGE)
    assert await internal_status(harness, new) == REFUSED
    unknown = await admin.post(f"{PAGE}/nosuchid/rotate", {"grace_seconds": "0"})
    assert unknown.status_code == 404


async def test_a_conflict_is_the_apis_409(harness: Harness, admin: Browser) -> None:
    """A refusal the page does not handle itself gets the status the REST API gives the
    same error (rotating a revoked credential conflicts: 409, not 400), on the error page."""
    await create(admin)
    (row,) = await harness.services.service_credentials.list_all()
    await admin.post(f"{PAGE}/{row.id}/revoke")
    again = await admin.post(f"{PAGE}/{row.id}/rotate", {"grace_seconds": "0"})
    assert again.status_code == 409
    assert "That did not work" in main_text(again)
    assert "This service credential is revoked." in main_text(again)


async def test_only_admins_with_the_form_token(
    harness: Harness, admin: Browser, alice: Browser
) -> None:
    """An ordinary user gets 403 for the page and its forms; a form without the CSRF
    token is refused; nothing is created."""
    assert (await alice.get(PAGE)).status_code == 403
    refused = await alice.post(PAGE, {"name": "x", "endpoints": "api-keys.authenticate"})
    assert refused.status_code == 403
    no_token = await admin.post(
        PAGE, {"name": "x", "endpoints": "api-keys.authenticate"}, csrf=False
    )
    assert no_token.status_code == 403
    assert await harness.services.service_credentials.list_all() == []


async def test_an_adopted_secret_is_listed_as_such_and_never_shown(
    harness: Harness, admin: Browser
) -> None:
    """Adopted on the command line (UTMStack's INTERNAL_KEY): the page says so, without
    the secret; rotating it here gives it a generated one, shown once."""
    secret = "q3ZbT8mWx1LcR7vN0pKd5hYs2GfJ9aEu"
    view = await harness.services.service_credentials.adopt(
        "log-input", ["api-keys.authenticate"], secret
    )
    listing = await admin.get(PAGE)
    assert listing.status_code == 200
    assert f"{view.id} (adopted secret)" in main_text(listing)
    assert secret not in listing.text
    rotated = await admin.post(f"{PAGE}/{view.id}/rotate", {"grace_seconds": "0"})
    assert rotated.status_code == 200, rotated.text
    assert html(rotated).by_id("new-credential").text.startswith("ags_")
    assert await internal_status(harness, secret) == REFUSED


async def test_a_reloaded_rotation_rotates_nothing(harness: Harness, admin: Browser) -> None:
    """The Settings UI review: reloading the page that showed a rotated secret sent the
    form again and rotated once more; the first secret, promised for the grace period,
    was refused at once. The form names the secret it replaces: sent again, 409."""
    credential = await create(admin)
    (row,) = await harness.services.service_credentials.list_all()
    form = html(await admin.get(PAGE)).find("form", action=f"{PAGE}/{row.id}/rotate").inputs()
    fields = {**form, "grace_seconds": "3600"}
    first = await admin.post(f"{PAGE}/{row.id}/rotate", fields, csrf=False)
    assert first.status_code == 200
    new = html(first).by_id("new-credential").text
    reloaded = await admin.post(f"{PAGE}/{row.id}/rotate", fields, csrf=False)
    assert reloaded.status_code == 409
    assert "nothing was changed" in main_text(reloaded)
    assert await internal_status(harness, credential) == ACCEPTED  # its grace period
    assert await internal_status(harness, new) == ACCEPTED
