"""UTMStack v12's web client as it sends a request (``frontend/src/shared/lib/
api-client.ts``): a 401 from any route but the login's and the refresh's is answered by
refreshing the token pair and sending the request once more. What a route answers 401
to is therefore tried twice."""

from __future__ import annotations

from typing import Any

import httpx2

from tests.conftest import Harness, bearer


async def ui_request(
    harness: Harness, method: str, path: str, pair: dict[str, Any], *, json: Any = None
) -> httpx2.Response:
    """``method path`` with the pair's access token, as v12's client sends it; ``pair``
    is updated when the client refreshes it."""
    response = await harness.client.request(
        method, path, json=json, headers=bearer(pair["access_token"])
    )
    if response.status_code != 401 or "/auth/login" in path or "/auth/refresh" in path:
        return response
    refreshed = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    if refreshed.status_code != 200:
        return response
    pair.update(refreshed.json())
    return await harness.client.request(
        method, path, json=json, headers=bearer(pair["access_token"])
    )
