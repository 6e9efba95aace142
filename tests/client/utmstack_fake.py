"""A small fake UTMStack server speaking the shapes of ``reference/utmstack-contract.md``.

* v10: login answers ``{"id_token", "authenticated"}`` plus an ``Authorization`` header;
  API keys are read from ``Authorization: Bearer <key>`` (the documentation's way).
* v11: login answers ``{"success", "token", "authenticated"}``; API keys are read only
  from ``Utm-Api-Key``; a user with two-factor authentication gets
  ``authenticated: false`` and a pre-verification token, completed by
  ``POST /api/tfa/verify-code`` (412 for a wrong code).
* Both: errors carry their message only in the ``X-UtmStack-error`` header with an
  empty body, except Spring's 401 for a request without credentials; a missing API
  key answers 500 (UTMStack's weakness 4); tokens are unsigned-looking JWTs with
  ``sub``, ``auth``, ``authenticated`` and ``exp`` only, expiring by the fake's clock.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

Version = Literal["v10", "v11"]

USER = "admin"
PASSWORD = "utm-operator-password"
TFA_USER = "secure"
TFA_PASSWORD = "utm-secure-password"
TFA_CODE = "123456"
TOKEN_TTL = 86_400


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def header_error(status: int, message: str) -> Response:
    """UTMStack's way: the message in a header, nothing in the body."""
    return Response(status_code=status, headers={"X-UtmStack-error": message})


@dataclass
class FakeUtmStack:
    """State and request counters of one fake server."""

    version: Version
    now: float = 1_900_000_000.0
    tokens: dict[str, tuple[str, float, bool]] = field(default_factory=dict)
    api_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    logins: int = 0
    seen_headers: list[dict[str, str]] = field(default_factory=list)

    def issue(self, login: str, *, authenticated: bool = True) -> str:
        exp = int(self.now + TOKEN_TTL)
        roles = "ROLE_PRE_VERIFICATION_USER" if not authenticated else "ROLE_ADMIN,ROLE_USER"
        claims = {"sub": login, "auth": roles, "authenticated": authenticated, "exp": exp}
        token = f"{_b64({'alg': 'HS512'})}.{_b64(claims)}.{secrets.token_urlsafe(16)}"
        self.tokens[token] = (login, exp, authenticated)
        return token

    def add_key(self, name: str, owner: str = USER) -> tuple[str, str]:
        key_id = str(uuid.uuid4())  # v11's api_keys.id is a UUID
        plaintext = secrets.token_urlsafe(32)  # 43 characters, no prefix, like UTMStack
        self.api_keys[key_id] = {"id": key_id, "name": name, "key": plaintext, "owner": owner}
        return key_id, plaintext

    # -- authentication --------------------------------------------------------------------

    def caller(self, request: Request) -> str | None:
        """The login a request acts as, or None."""
        if self.version == "v11":
            key = request.headers.get("Utm-Api-Key")
            if key:
                return self._key_owner(key)
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not credential:
            return None
        known = self.tokens.get(credential)
        if known is not None:
            login, exp, authenticated = known
            return login if authenticated and exp > self.now else None
        if self.version == "v10":
            return self._key_owner(credential)
        return None

    def _key_owner(self, key: str) -> str | None:
        for entry in self.api_keys.values():
            if secrets.compare_digest(entry["key"], key):
                return str(entry["owner"])
        return None

    # -- endpoints -------------------------------------------------------------------------

    async def authenticate(self, request: Request) -> Response:
        self.logins += 1
        body = await request.json()
        username, password = str(body.get("username", "")).lower(), body.get("password")
        if (username, password) == (TFA_USER, TFA_PASSWORD):
            pre = self.issue(TFA_USER, authenticated=False)
            if self.version == "v10":  # UserJWTController.authorize with TFA enabled
                return JSONResponse(
                    {"id_token": pre, "authenticated": False},
                    headers={"Authorization": f"Bearer {pre}"},
                )
            return JSONResponse({"success": True, "token": pre, "authenticated": False})
        if (username, password) != (USER, PASSWORD):
            return header_error(401, "Bad credentials")
        token = self.issue(USER)
        if self.version == "v10":
            return JSONResponse(
                {"id_token": token, "authenticated": True},
                headers={"Authorization": f"Bearer {token}"},
            )
        return JSONResponse({"success": True, "token": token, "authenticated": True})

    async def verify_code(self, request: Request) -> Response:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        pending = self.tokens.get(credential) if scheme == "Bearer" else None
        if pending is None or pending[2]:
            return header_error(401, "Unauthorized")
        # UTMStack v11's UI sends the bare digits as a text body.
        if (await request.body()).decode().strip() != TFA_CODE:
            return header_error(412, "Invalid verification code")
        token = self.issue(pending[0])
        return JSONResponse({"success": True, "token": token, "authenticated": True})

    async def verify_code_v10(self, request: Request) -> Response:
        """v10's ``GET /api/tfa/verifyCode?code=``: a wrong code is 401 (UserJWTController)."""
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        pending = self.tokens.get(credential) if scheme == "Bearer" else None
        if pending is None or pending[2]:
            return header_error(401, "Unauthorized")
        if request.query_params.get("code") != TFA_CODE:
            return header_error(401, "Your secret code is invalid")
        token = self.issue(pending[0])
        return JSONResponse(
            {"id_token": token, "authenticated": True},
            headers={"Authorization": f"Bearer {token}"},
        )

    def _unauthorized(self, request: Request) -> Response:
        # Spring Boot's body, as UTMStack's documentation shows it: no "message".
        return JSONResponse(
            {
                "timestamp": "2025-04-16T16:26:35.664+00:00",
                "status": 401,
                "error": "Unauthorized",
                "path": request.url.path,
            },
            status_code=401,
        )

    async def account(self, request: Request) -> Response:
        self.seen_headers.append(dict(request.headers))
        login = self.caller(request)
        if login is None:
            return self._unauthorized(request)
        return JSONResponse(
            {
                "id": 1,
                "login": login,
                "firstName": "Admin",
                "lastName": None,
                "email": f"{login}@localhost",
                "activated": True,
                "langKey": "en",
                "authorities": ["ROLE_ADMIN", "ROLE_USER"],
            }
        )

    async def api_keys_collection(self, request: Request) -> Response:
        if self.caller(request) is None:
            return self._unauthorized(request)
        if request.method == "GET":
            dtos = [self._dto(entry) for entry in self.api_keys.values()]
            return JSONResponse(dtos, headers={"X-Total-Count": str(len(dtos))})
        body = await request.json()
        if any(entry["name"] == body.get("name") for entry in self.api_keys.values()):
            return header_error(409, "An API key with this name already exists.")
        key_id, _ = self.add_key(str(body["name"]))
        self.api_keys[key_id]["allowedIp"] = body.get("allowedIp") or []
        return JSONResponse(self._dto(self.api_keys[key_id]), status_code=201)

    async def api_key(self, request: Request) -> Response:
        if self.caller(request) is None:
            return self._unauthorized(request)
        entry = self.api_keys.get(request.path_params["key_id"])
        if entry is None:
            return header_error(500, "ApiKey not found")  # UTMStack answers 500 here
        if request.method == "DELETE":
            del self.api_keys[entry["id"]]
            return Response(status_code=204)
        return JSONResponse(self._dto(entry))

    async def generate(self, request: Request) -> Response:
        if self.caller(request) is None:
            return self._unauthorized(request)
        entry = self.api_keys.get(request.path_params["key_id"])
        if entry is None:
            return header_error(500, "ApiKey not found")
        entry["key"] = secrets.token_urlsafe(32)
        return PlainTextResponse(entry["key"])

    @staticmethod
    def _dto(entry: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": entry["id"],
            "name": entry["name"],
            # UTMStack's table keeps the list comma-joined; its DTO sends a list.
            "allowedIp": entry.get("allowedIp", []),
            "createdAt": "2026-01-01T00:00:00Z",
            "expiresAt": "2027-01-31T00:00:00Z",
            "generatedAt": "2026-01-01T00:00:00Z",
        }

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/authenticate", self.authenticate, methods=["POST"]),
                Route("/api/tfa/verify-code", self.verify_code, methods=["POST"])
                if self.version == "v11"
                else Route("/api/tfa/verifyCode", self.verify_code_v10, methods=["GET"]),
                Route("/api/account", self.account, methods=["GET"]),
                Route("/api/api-keys", self.api_keys_collection, methods=["GET", "POST"]),
                Route("/api/api-keys/{key_id}", self.api_key, methods=["GET", "DELETE"]),
                Route("/api/api-keys/{key_id}/generate", self.generate, methods=["POST"]),
            ]
        )
