"""The guard's one HTTP client to authgate: every answer bounded in bytes.

An answer is read as it streams in and dropped as soon as it is longer than the caller's
bound (a ``Content-Length`` over it is refused before any of the body is read): a wrong
``AUTHGATE_URL``, or a man in the middle of plain HTTP, cannot make the guard buffer a
body of any size. The time bound is the caller's (``anyio.fail_after`` around the call).

The client is opened again when a closed guard is entered again (``async with guard``
in a second lifespan of one app, as a test suite's second ``TestClient`` runs it); a
call on a closed one fails as authgate being unreachable (503), never with a 500.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import httpx2

from authgate.guard._config import GuardConfig

__all__ = ["Answer", "AnswerTooLarge", "AuthgateLink", "LinkClosed", "LinkFailure"]


class LinkFailure(Exception):
    """authgate could not be heard (besides httpx's own errors and a timeout)."""


class AnswerTooLarge(LinkFailure):
    """The answer was longer than the bound for it."""


class LinkClosed(LinkFailure):
    """The guard was closed (``aclose``) and not entered again."""


class Answer(NamedTuple):
    status_code: int
    headers: httpx2.Headers
    content: bytes


class AuthgateLink:
    def __init__(self, config: GuardConfig) -> None:
        self._config = config
        self._http = config.http_client()

    async def get(
        self,
        path: str,
        *,
        headers: Mapping[str, str] | Sequence[tuple[bytes, bytes]],
        limit: int,
    ) -> Answer:
        """``GET path`` with ``headers`` (a mapping or a list of pairs), the body at
        most ``limit`` bytes.

        Raises:
            httpx2.HTTPError: authgate could not be reached or spoke no HTTP.
            LinkFailure: the answer was too long, or the guard is closed.
        """
        if self._http.is_closed:
            raise LinkClosed()
        async with self._http.stream("GET", path, headers=headers) as response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise AnswerTooLarge()
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise AnswerTooLarge()
            return Answer(response.status_code, response.headers, bytes(body))

    def reopen(self) -> None:
        """A new client if this one was closed."""
        if self._http.is_closed:
            self._http = self._config.http_client()

    async def aclose(self) -> None:
        await self._http.aclose()
