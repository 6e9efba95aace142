"""authgate's own API as request descriptions: what to send and how to read the answer.

Each function returns a :class:`Call`; ``Client`` and ``AsyncClient`` only send it. No
I/O here, so both clients share every path, parameter and parser.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx2

from authgate.client._exceptions import UnexpectedResponseError
from authgate.client._models import (
    Account,
    ApiKey,
    AuditEvent,
    CreatedApiKey,
    Page,
    RegeneratedApiKey,
    Role,
    SessionInfo,
    UsageRecord,
    User,
    V12User,
)

T = TypeVar("T")
M = TypeVar("M")
Timespec = Literal["auto", "seconds", "milliseconds"]

Params = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request to make and the parser of its success answer."""

    method: str
    path: str
    parse: Callable[[httpx2.Response], T]
    params: Params | None = None
    json: Any = None
    content: str | None = None
    content_type: str | None = None
    # Sent without credentials: a public route, for callers who may have none (a
    # forgotten password) and must not log in first.
    public: bool = False


def iso(moment: datetime, *, timespec: Timespec = "milliseconds") -> str:
    """An instant in ISO 8601, in UTC, with ``Z``: UTMStack's format (milliseconds) for
    requests; the CLI prints the REST API's (``auto``, as the server writes its JSON)
    and people's (``seconds``). A naive datetime is taken as local time."""
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def json_body(response: httpx2.Response) -> Any:
    """The answer's JSON; else ``UnexpectedResponseError`` saying whether the body was
    not JSON at all (its content type) or JSON that does not parse (where)."""
    try:
        return json.loads(response.content)
    except ValueError as error:
        path = response.request.url.path
        content_type = response.headers.get("content-type", "")
        if "json" in content_type.lower():
            problem = f"the body is not valid JSON ({error})"
        else:
            problem = f"expected JSON, got {content_type or 'no content type'}"
        raise UnexpectedResponseError(
            f"the answer from {path}: {problem}", response=response
        ) from None


def _object(response: httpx2.Response) -> dict[str, Any]:
    body = json_body(response)
    if not isinstance(body, dict):
        raise UnexpectedResponseError("expected a JSON object", response=response)
    return body


def _nothing(response: httpx2.Response) -> None:
    return None


def _page(
    parse_item: Callable[[dict[str, Any]], M], page: int, size: int
) -> Callable[[httpx2.Response], Page[M]]:
    def parse(response: httpx2.Response) -> Page[M]:
        body = json_body(response)
        if not isinstance(body, list):
            raise UnexpectedResponseError("expected a JSON list", response=response)
        total = response.headers.get("X-Total-Count", "")
        return Page(
            items=tuple(parse_item(item) for item in body if isinstance(item, dict)),
            total=int(total) if total.isdigit() else None,
            page=page,
            size=size,
        )

    return parse


def _paging(page: int, size: int) -> Params:
    return [("page", str(page)), ("size", str(size))]


# -- account ----------------------------------------------------------------------------------


def account() -> Call[Account]:
    return Call("GET", "api/account", lambda r: Account.from_json(_object(r)))


def logout() -> Call[None]:
    return Call("POST", "api/logout", _nothing)


# -- password reset (public; UTMStack's AccountResource) -------------------------------------


def request_password_reset(email: str) -> Call[None]:
    # The address is the raw text body, as UTMStack's UI posts it.
    return Call(
        "POST",
        "api/account/reset-password/init",
        _nothing,
        content=email,
        content_type="text/plain",
        public=True,
    )


def finish_password_reset(key: str, new_password: str) -> Call[None]:
    return Call(
        "POST",
        "api/account/reset-password/finish",
        _nothing,
        json={"key": key, "newPassword": new_password},
        public=True,
    )


# -- v12: the caller and their sessions (/api/v1/auth) ----------------------------------------


def me() -> Call[V12User]:
    return Call("GET", "api/v1/auth/me", lambda r: V12User.from_json(_object(r)))


def sessions() -> Call[tuple[SessionInfo, ...]]:
    def parse(response: httpx2.Response) -> tuple[SessionInfo, ...]:
        body = json_body(response)
        if not isinstance(body, list):
            raise UnexpectedResponseError("expected a JSON list", response=response)
        return tuple(SessionInfo.from_json(item) for item in body if isinstance(item, dict))

    return Call("GET", "api/v1/auth/sessions", parse)


def revoke_session(session_id: str) -> Call[None]:
    return Call("DELETE", f"api/v1/auth/sessions/{quote(session_id, safe='')}", _nothing)


def revoke_other_sessions() -> Call[None]:
    return Call("DELETE", "api/v1/auth/sessions", _nothing)


def change_password(current_password: str, new_password: str) -> Call[None]:
    return Call(
        "POST",
        "api/v1/auth/change-password",
        _nothing,
        json={"current_password": current_password, "new_password": new_password},
    )


# -- API keys ---------------------------------------------------------------------------------


def _key_body(
    name: str,
    expires_at: datetime | None,
    allowed_ips: Sequence[str],
    scopes: Sequence[str] | None,
    rate_limit: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "allowedIp": list(allowed_ips),
        "expiresAt": iso(expires_at) if expires_at is not None else None,
    }
    if scopes is not None:  # omitted: the server's default (authgate: read + write)
        body["scopes"] = list(scopes)
    if rate_limit is not None:
        body["rateLimit"] = rate_limit
    return body


def list_api_keys(
    *, page: int, size: int, include_revoked: bool, all_users: bool
) -> Call[Page[ApiKey]]:
    params = _paging(page, size)
    if include_revoked:
        params.append(("includeRevoked", "true"))
    if all_users:
        params.append(("all", "true"))
    return Call("GET", "api/api-keys", _page(ApiKey.from_json, page, size), params=params)


def _key_path(key_id: str) -> str:
    """``api/api-keys/<id>``: a key's id is its UUID (any text is escaped, never a path)."""
    return "api/api-keys/" + quote(str(key_id), safe="")


def get_api_key(key_id: str) -> Call[ApiKey]:
    return Call("GET", _key_path(key_id), lambda r: ApiKey.from_json(_object(r)))


def create_api_key(
    name: str,
    *,
    expires_at: datetime | None,
    allowed_ips: Sequence[str],
    scopes: Sequence[str] | None,
    rate_limit: str | None,
) -> Call[CreatedApiKey]:
    return Call(
        "POST",
        "api/api-keys",
        lambda r: CreatedApiKey.from_json(_object(r)),
        json=_key_body(name, expires_at, allowed_ips, scopes, rate_limit),
    )


def update_api_key(
    key_id: str,
    *,
    name: str,
    expires_at: datetime | None,
    allowed_ips: Sequence[str],
    scopes: Sequence[str] | None,
    rate_limit: str | None,
) -> Call[ApiKey]:
    return Call(
        "PUT",
        _key_path(key_id),
        lambda r: ApiKey.from_json(_object(r)),
        json=_key_body(name, expires_at, allowed_ips, scopes, rate_limit),
    )


def regenerate_api_key(key_id: str, *, grace: timedelta) -> Call[RegeneratedApiKey]:
    def parse(response: httpx2.Response) -> RegeneratedApiKey:
        key = response.text.strip()
        if key.startswith('"'):  # a server answering a JSON string instead of text/plain
            key = str(json_body(response))
        if not key:
            raise UnexpectedResponseError("the answer carries no key", response=response)
        return RegeneratedApiKey(id=str(key_id), key=key)

    params = [("graceSeconds", str(int(grace.total_seconds())))] if grace else None
    return Call("POST", _key_path(key_id) + "/generate", parse, params=params)


def revoke_api_key(key_id: str) -> Call[None]:
    return Call("DELETE", _key_path(key_id), _nothing)


def api_key_usage(
    *,
    api_key_id: str | None,
    since: datetime | None,
    until: datetime | None,
    status: int | None,
    outcome: str | None,
    page: int,
    size: int,
) -> Call[Page[UsageRecord]]:
    params = _paging(page, size)
    for name, value in (
        ("apiKeyId", None if api_key_id is None else str(api_key_id)),
        ("from", None if since is None else iso(since)),
        ("to", None if until is None else iso(until)),
        ("status", None if status is None else str(int(status))),
        ("outcome", outcome),
    ):
        if value is not None:
            params.append((name, value))
    return Call(
        "GET", "api/api-keys/usage", _page(UsageRecord.from_json, page, size), params=params
    )


# -- users (admins) ---------------------------------------------------------------------------


def _user_path(login: str) -> str:
    return f"api/users/{quote(login, safe='')}"


def list_users(*, page: int, size: int) -> Call[Page[User]]:
    return Call("GET", "api/users", _page(User.from_json, page, size), params=_paging(page, size))


def get_user(login: str) -> Call[User]:
    return Call("GET", _user_path(login), lambda r: User.from_json(_object(r)))


def create_user(
    login: str,
    *,
    email: str,
    password: str | None,
    first_name: str | None,
    last_name: str | None,
    authorities: Sequence[str],
    activated: bool,
) -> Call[User]:
    body: dict[str, Any] = {
        "login": login,
        "email": email,
        "authorities": list(authorities),
        "activated": activated,
    }
    if password is not None:
        body["password"] = password
    if first_name is not None:
        body["firstName"] = first_name
    if last_name is not None:
        body["lastName"] = last_name
    return Call("POST", "api/users", lambda r: User.from_json(_object(r)), json=body)


def update_user(
    login: str,
    *,
    email: str | None,
    first_name: str | None,
    last_name: str | None,
    lang_key: str | None,
    authorities: Sequence[str] | None,
    activated: bool | None,
) -> Call[User]:
    """Only what is given is sent; the server keeps the rest."""
    given = {
        "email": email,
        "firstName": first_name,
        "lastName": last_name,
        "langKey": lang_key,
        "authorities": list(authorities) if authorities is not None else None,
        "activated": activated,
    }
    body = {name: value for name, value in given.items() if value is not None}
    return Call("PUT", _user_path(login), lambda r: User.from_json(_object(r)), json=body)


def delete_user(login: str) -> Call[None]:
    return Call("DELETE", _user_path(login), _nothing)


def roles() -> Call[list[Role]]:
    """The roles without their permissions (v12 lists those per role: :func:`role`)."""

    def parse(response: httpx2.Response) -> list[Role]:
        body = json_body(response)
        if not isinstance(body, list):
            raise UnexpectedResponseError("expected a JSON list of roles", response=response)
        return [Role.from_json(item) for item in body if isinstance(item, dict)]

    return Call("GET", "api/v1/roles", parse)


def role(role_id: str) -> Call[Role]:
    return Call(
        "GET", "api/v1/roles/" + quote(role_id, safe=""), lambda r: Role.from_json(_object(r))
    )


# -- audit (admins) ---------------------------------------------------------------------------


def audit_events(
    *,
    types: Sequence[str],
    outcome: str | None,
    actor: str | None,
    ip: str | None,
    since: datetime | None,
    until: datetime | None,
    api_key_id: str | None,
    page: int,
    size: int,
) -> Call[Page[AuditEvent]]:
    params = _paging(page, size)
    params.extend(("type", event_type) for event_type in types)
    for name, value in (
        ("outcome", outcome),
        ("actor", actor),
        ("ip", ip),
        ("from", None if since is None else iso(since)),
        ("to", None if until is None else iso(until)),
        ("apiKeyId", api_key_id),
    ):
        if value is not None:
            params.append((name, value))
    return Call("GET", "api/audit-events", _page(AuditEvent.from_json, page, size), params=params)
