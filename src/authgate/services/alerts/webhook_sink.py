"""The webhook sink: each alert (and audit checkpoint) POSTed as JSON, optionally signed.

The webhook secret and the URL's path (which some services use as a credential) never
appear in logs or ``DeliveryError`` messages: only the host does.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

import httpx2

from authgate.clock import Clock, utc_now
from authgate.services.alerts.messages import (
    Alert,
    CheckpointNotice,
    DeliveryError,
    compact_json,
)
from authgate.services.alerts.targets import validate_webhook_url


class WebhookSink:
    """POSTs the alert's JSON (compact, sorted keys) to ``url``; a non-2xx answer fails.

    With a ``secret``, receivers can check authenticity and freshness::

        X-Authgate-Timestamp: <unix seconds>
        X-Authgate-Signature: sha256=<hex HMAC-SHA256(secret, b"<timestamp>." + raw body)>

    Recompute the HMAC over the timestamp header, a ``.`` and the exact body bytes,
    compare in constant time, and reject timestamps too far from your clock (replays).
    Without an injected ``client``, each delivery uses a short-lived client (alerts are rare).
    """

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        secret: bytes | None,
        timeout: float,
        client: httpx2.AsyncClient | None = None,
        clock: Clock = utc_now,
    ) -> None:
        if secret is not None and not secret:
            raise ValueError("the webhook secret must not be empty")
        self._url = validate_webhook_url(url)
        # Only the host is ever shown: some services put a credential in the path.
        self._host = urlsplit(url).hostname or "?"
        self._secret = secret
        self._timeout = timeout
        self._client = client
        self._clock = clock

    def __repr__(self) -> str:
        return f"WebhookSink(host={self._host!r}, signed={self._secret is not None})"

    def request_headers(self, body: bytes, *, event: str = "alert") -> dict[str, str]:
        """The headers sent with ``body``, including the signature when a secret is set."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "authgate-alerts",
            "X-Authgate-Event": event,
        }
        if self._secret is not None:
            timestamp = str(int(self._clock().timestamp()))
            signed = f"{timestamp}.".encode() + body
            digest = hmac.new(self._secret, signed, hashlib.sha256).hexdigest()
            headers["X-Authgate-Timestamp"] = timestamp
            headers["X-Authgate-Signature"] = f"sha256={digest}"
        return headers

    async def deliver(self, alert: Alert) -> None:
        await self._post(compact_json(alert.as_json()).encode(), event="alert")

    async def deliver_checkpoint(self, notice: CheckpointNotice) -> None:
        """POSTs ``{"kind": "audit_checkpoint", "checkpoint": "<JWS>", ...}`` with
        ``X-Authgate-Event: audit-checkpoint``, signed like alerts."""
        await self._post(compact_json(notice.as_json()).encode(), event="audit-checkpoint")

    async def _post(self, body: bytes, *, event: str) -> None:
        headers = self.request_headers(body, event=event)
        try:
            if self._client is not None:
                response = await self._client.post(
                    self._url, content=body, headers=headers, timeout=self._timeout
                )
            else:
                async with httpx2.AsyncClient(timeout=self._timeout) as client:
                    response = await client.post(self._url, content=body, headers=headers)
        except httpx2.HTTPError as error:
            raise DeliveryError(f"webhook {self._host}: {type(error).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"webhook {self._host} answered HTTP {response.status_code}")
