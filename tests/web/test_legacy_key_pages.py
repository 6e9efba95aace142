"""Settings UI: keys imported from UTMStack carry a ``legacy`` badge in the key list,
on the key's page (with the advice to rotate) and in the keys review."""

from __future__ import annotations

from authgate.storage.models import ApiKey
from tests.api.test_legacy_keys import insert_legacy_key, legacy_plaintext
from tests.conftest import ADMIN_PASSWORD, Harness
from tests.web.conftest import Browser, OpenBrowser, html, main_text, signed_in


async def test_legacy_keys_are_marked_on_every_page(
    harness: Harness, open_browser: OpenBrowser, alice: Browser, admin_id: int, alice_id: int
) -> None:
    key_pk = await insert_legacy_key(harness, alice_id, legacy_plaintext(), name="from-utm")
    async with harness.services.db.session() as session:
        stored = await session.get(ApiKey, key_pk)
    assert stored is not None
    key_id = stored.public_id  # pages name keys by their UUID

    listed = html(await alice.get("/settings/api-keys"))
    row = listed.find("tr", data_key_id=key_id)
    assert row.find("span", class_="legacy").text == "legacy"

    detail = await alice.get(f"/settings/api-keys/{key_id}")
    assert "Rotate: plaintext was stored by UTMStack" in main_text(detail)

    admin = await signed_in(open_browser, "admin", ADMIN_PASSWORD)
    review = html(await admin.get("/settings/keys-review"))
    legacy_row = review.by_id("legacy").find("tr", data_key_id=key_id)
    assert legacy_row.find("span", class_="legacy").text == "legacy"
    assert review.by_id("beyond-expiry-policy").find("tr", data_key_id=key_id)
