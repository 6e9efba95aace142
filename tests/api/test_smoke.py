from tests.conftest import Harness, bearer


async def test_login_then_call_protected_endpoint(harness: Harness, admin_token: str) -> None:
    """A token from /api/authenticate opens GET /api/authenticate."""
    response = await harness.client.get("/api/authenticate", headers=bearer(admin_token))
    assert response.status_code == 200
    assert response.text == "admin"
