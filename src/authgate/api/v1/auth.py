"""``/api/v1/auth``: v12's login (and its second step), token refresh, logout, the caller
and their sessions.

Follows UTMStack v12's ``backend/modules/iam`` (routes.go, dto/auth.go, handler/auth.go)
as described in issue 17; the v12 sources are not in this project's UTMStack snapshot.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from authgate.api.access import (
    AuthenticatedRoute,
    SelfServiceRoute,
    principal_of,
    services_of,
    sets_credentials,
)
from authgate.api.errors import documented_v12
from authgate.exceptions import BadCredentials, ValidationFailed
from authgate.reasons import Reason
from authgate.services.audit.events import Actor, current_request
from authgate.services.sessions import TokenPair
from authgate.services.user_fields import UserChanges

PREFIX = "/api/v1"
public_router = APIRouter(prefix=PREFIX, tags=["v12 authentication"])
router = APIRouter(prefix=PREFIX, tags=["v12 authentication"], route_class=AuthenticatedRoute)
self_router = APIRouter(prefix=PREFIX, tags=["v12 authentication"], route_class=SelfServiceRoute)

V12_ERROR_REF = "#/components/schemas/V12ErrorBody"
Secret = Annotated[str, Field(min_length=1, max_length=1024)]


class LoginRequest(BaseModel):
    """v12's ``LoginRequest``; ``login`` is the e-mail (a login name works too).
    ``provider_id`` (identity providers) is accepted and ignored: not supported yet."""

    login: Annotated[str, Field(min_length=1, max_length=254)]
    password: Secret
    provider_id: str | None = None


class RefreshRequest(BaseModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=1024)]


class LogoutRequest(BaseModel):
    refresh_token: Annotated[str, Field(max_length=1024)] = ""


class UserResponse(BaseModel):
    id: str = Field(description="The user's public UUID.")
    email: str
    name: str
    status: Literal["pending", "active", "inactive", "suspended"]
    lang_key: str
    image_url: str | None = None
    federated: bool = False
    tfa_enabled: bool = False


class LoginResponse(BaseModel):
    """v12's ``LoginResponse``. With ``tfa_required`` the password was right but the
    user has a second factor: no token and no user yet (null), only ``pre_auth_token``
    for ``/auth/tfa/verify-code``."""

    access_token: str | None
    refresh_token: str | None
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_at: datetime | None
    refresh_expires_at: datetime | None
    user: UserResponse | None
    tfa_required: bool = False
    tfa_type: Literal["totp", "email"] | None = None
    pre_auth_token: str | None = Field(
        default=None, description="With tfa_required: 5 minutes, once, verify-code only."
    )


class VerifyCodeRequest(BaseModel):
    pre_auth_token: Annotated[str, Field(min_length=1, max_length=4096)]
    code: Annotated[str, Field(min_length=1, max_length=32)]


class UpdateMeRequest(BaseModel):
    email: Annotated[str, Field(max_length=254)] | None = None
    name: Annotated[str, Field(max_length=101)] | None = None
    lang_key: Annotated[str, Field(max_length=10)] | None = None


class ChangePasswordRequest(BaseModel):
    current_password: Secret
    new_password: Secret


class SessionResponse(BaseModel):
    id: str
    ip: str | None
    user_agent: str | None
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    current: bool


async def _user(request: Request, user_id: int) -> UserResponse:
    profile = await services_of(request).sessions.profile(user_id)
    return UserResponse(
        id=profile.public_id,
        email=profile.email,
        name=profile.name,
        status="active" if profile.activated else "inactive",
        lang_key=profile.lang_key,
        tfa_enabled=profile.tfa_enabled,
    )


async def _pair_response(request: Request, pair: TokenPair, response: Response) -> LoginResponse:
    response.headers["Cache-Control"] = "no-store"
    return LoginResponse(
        access_token=pair.access.token,
        refresh_token=pair.refresh_token,
        expires_at=pair.access.claims.expires_at,
        refresh_expires_at=pair.refresh_expires_at,
        user=(await _user(request, pair.user.id)),
    )


@public_router.post(
    "/auth/login",
    summary="Log in: an access and a refresh token, or (a second factor) a pre-auth token",
    responses=documented_v12(400, 401, 403, 413, 429),
)
async def login(body: LoginRequest, request: Request, response: Response) -> LoginResponse:
    info = current_request.get()
    answer = await services_of(request).sessions.login(
        body.login,
        body.password,
        ip=info.client_ip if info else None,
        user_agent=info.user_agent if info else None,
    )
    if isinstance(answer, TokenPair):
        return await _pair_response(request, answer, response)
    response.headers["Cache-Control"] = "no-store"
    return LoginResponse(
        access_token=None,
        refresh_token=None,
        expires_at=None,
        refresh_expires_at=None,
        user=None,
        tfa_required=True,
        tfa_type="totp" if answer.method == "TOTP" else "email",
        pre_auth_token=answer.pre_auth.token,
    )


@public_router.post(
    "/auth/tfa/verify-code",
    summary="Second step of a login: the pre-auth token and a code (TOTP, e-mail or "
    "recovery) for an access and a refresh token",
    responses=documented_v12(400, 401, 413, 429),
)
async def verify_code(
    body: VerifyCodeRequest, request: Request, response: Response
) -> LoginResponse:
    info = current_request.get()
    pair = await services_of(request).sessions.after_code(
        body.pre_auth_token,
        body.code,
        ip=info.client_ip if info else None,
        user_agent=info.user_agent if info else None,
    )
    return await _pair_response(request, pair, response)


@public_router.post(
    "/auth/refresh",
    summary="Exchange a refresh token for a new pair",
    responses=documented_v12(400, 401, 413),
)
async def refresh(body: RefreshRequest, request: Request, response: Response) -> LoginResponse:
    pair = await services_of(request).sessions.refresh(body.refresh_token)
    return await _pair_response(request, pair, response)


@public_router.post(
    "/auth/logout",
    summary="End the refresh token's session (its access tokens stop working too)",
    status_code=204,
    response_class=Response,
    responses=documented_v12(400, 413),
)
async def logout(body: LogoutRequest, request: Request) -> Response:
    await services_of(request).sessions.logout(body.refresh_token)
    return Response(status_code=204)


@public_router.get("/health", summary="Liveness", tags=["public"])
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/auth/me", summary="The caller", responses=documented_v12(401, 403))
async def me(request: Request) -> UserResponse:
    return await _user(request, principal_of(request).user_id)


@router.get(
    "/auth/authenticate",
    summary="The caller's login, as text",
    response_class=PlainTextResponse,
    # Errors stay JSON on this text route: said explicitly, or FastAPI documents them as text.
    responses={
        status: {
            "description": entry["description"],
            "content": {"application/json": {"schema": {"$ref": V12_ERROR_REF}}},
        }
        for status, entry in documented_v12(401, 403).items()
    },
)
async def authenticate(request: Request) -> PlainTextResponse:
    return PlainTextResponse(principal_of(request).login)


@self_router.put(
    "/auth/me",
    summary="Change the caller's e-mail, name or language",
    responses=documented_v12(400, 401, 403, 409, 413),
)
async def update_me(body: UpdateMeRequest, request: Request) -> UserResponse:
    principal = principal_of(request)
    first, last = None, None
    if body.name is not None:
        first, _, rest = body.name.strip().partition(" ")
        last = rest.strip()
    await services_of(request).users.update_user(
        principal.login,
        UserChanges(email=body.email, first_name=first, last_name=last, lang_key=body.lang_key),
        acting_user_id=principal.user_id,
    )
    return await _user(request, principal.user_id)


@self_router.post(
    "/auth/change-password",
    summary="Change the caller's password (every session ends)",
    status_code=204,
    response_class=Response,
    responses=documented_v12(400, 401, 403, 413, 423, 429),
)
@sets_credentials("changes the caller's password")
async def change_password(body: ChangePasswordRequest, request: Request) -> Response:
    principal = principal_of(request)
    try:
        await services_of(request).accounts.change_password(
            principal.user_id,
            current_password=body.current_password,
            new_password=body.new_password,
        )
    except ValidationFailed as failure:
        if failure.reason is Reason.WRONG_CURRENT_PASSWORD:  # v12: 401
            raise BadCredentials(failure.message, reason=failure.reason) from None
        raise
    return Response(status_code=204)


@router.get("/auth/sessions", summary="The caller's sessions", responses=documented_v12(401, 403))
async def sessions(request: Request) -> list[SessionResponse]:
    principal = principal_of(request)
    listed = await services_of(request).sessions.list_live(principal.user_id)
    return [
        SessionResponse(
            id=s.id,
            ip=s.ip,
            user_agent=s.user_agent,
            created_at=s.created_at,
            last_used_at=s.last_used_at,
            expires_at=s.expires_at,
            current=s.id == principal.session_id,
        )
        for s in listed
    ]


@self_router.delete(
    "/auth/sessions",
    summary="Revoke every session of the caller but the current one",
    status_code=204,
    response_class=Response,
    responses=documented_v12(401, 403),
)
async def revoke_other_sessions(request: Request) -> Response:
    principal = principal_of(request)
    await services_of(request).sessions.revoke_others(
        principal.user_id, keep=principal.session_id, actor=Actor.of(principal)
    )
    return Response(status_code=204)


@self_router.delete(
    "/auth/sessions/{session_id}",
    summary="Revoke one of the caller's sessions",
    status_code=204,
    response_class=Response,
    responses=documented_v12(401, 403, 404),
)
async def revoke_session(session_id: str, request: Request) -> Response:
    principal = principal_of(request)
    await services_of(request).sessions.revoke(
        principal.user_id, session_id, actor=Actor.of(principal)
    )
    return Response(status_code=204)
