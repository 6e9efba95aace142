"""``/api/v1/auth``: v12's login (and its second step), token refresh, logout, the caller
and their sessions.

Follows UTMStack v12's ``backend/modules/iam`` (routes.go, dto/auth.go, handler/auth.go)
as described in issue 17; the v12 sources are not in this project's UTMStack snapshot.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from authgate.api.access import (
    AuthenticatedRoute,
    SelfServiceRoute,
    principal_of,
    require_password_session_for_target,
    services_of,
    sets_credentials,
)
from authgate.api.errors import documented_v12
from authgate.api.routing import AuthgateRoute
from authgate.api.v1.paths import UuidPath, parse_uuid
from authgate.exceptions import FieldError, ValidationFailed
from authgate.reasons import Reason
from authgate.security.second_factor import normalized_recovery_code
from authgate.services.audit.events import Actor, current_request
from authgate.services.sessions import TokenPair
from authgate.services.user_fields import UserChanges

PREFIX = "/api/v1"
public_router = APIRouter(prefix=PREFIX, tags=["v12 authentication"], route_class=AuthgateRoute)
router = APIRouter(prefix=PREFIX, tags=["v12 authentication"], route_class=AuthenticatedRoute)
self_router = APIRouter(prefix=PREFIX, tags=["v12 authentication"], route_class=SelfServiceRoute)

V12_ERROR_REF = "#/components/schemas/V12ErrorBody"
Secret = Annotated[str, Field(min_length=1, max_length=1024)]
# What Go writes for a time.Time never set ("0001-01-01T00:00:00Z"): v12's login sends
# it as the expiries of the token pair it does not issue yet.
GO_ZERO_TIME: Final = datetime(1, 1, 1, tzinfo=UTC)


class LoginRequest(BaseModel):
    """v12's ``LoginRequest``; ``login`` is the e-mail (a login name works too).
    ``provider_id`` (identity providers) is accepted and ignored: not supported yet."""

    login: Annotated[str, Field(min_length=1, max_length=254)]
    password: Secret
    provider_id: str | None = None


class RefreshRequest(BaseModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=1024)]


def _refresh_token_required(schema: dict[str, Any]) -> None:
    """Documented as required (400 when missing or empty); read with a default so that
    its absence gets v12's own 400 body, not a validation error."""
    schema["required"] = ["refresh_token"]
    schema["properties"]["refresh_token"].pop("default", None)


class LogoutRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra=_refresh_token_required)

    refresh_token: Annotated[
        str,
        Field(
            max_length=1024,
            description="Required: 400 when missing or empty.",
            json_schema_extra={"minLength": 1},
        ),
    ] = ""


class UserResponse(BaseModel):
    id: str = Field(description="The user's public UUID.")
    email: str
    name: str
    status: Literal["pending", "active", "inactive", "suspended"]
    lang_key: str
    image_url: str | None = None
    federated: bool = False
    tfa_enabled: bool = False


def _is_null(value: object) -> bool:
    return value is None


class LoginResponse(BaseModel):
    """v12's ``LoginResponse`` (dto/auth.go): its ``tfa_*`` fields and ``pre_auth_token``
    are omitempty, left out when null (only they: ``user.image_url`` is null as on
    ``/auth/me``). With ``tfa_required`` the password was right
    but the user has a second factor: ``user`` and ``pre_auth_token`` (for
    ``/auth/tfa/verify-code``), and the token pair's fields as Go's zero values (empty
    strings, year 1), since v12 embeds the pair it did not issue."""

    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_at: datetime
    refresh_expires_at: datetime
    user: UserResponse
    tfa_required: bool | None = Field(
        default=None, exclude_if=_is_null, description="true, or left out."
    )
    tfa_type: Literal["totp", "email"] | None = Field(default=None, exclude_if=_is_null)
    pre_auth_token: str | None = Field(
        default=None,
        exclude_if=_is_null,
        description="With tfa_required: 5 minutes, once, verify-code only.",
    )


class VerifyCodeRequest(BaseModel):
    pre_auth_token: Annotated[str, Field(min_length=1, max_length=4096)]
    code: Annotated[
        str,
        Field(
            min_length=1,
            max_length=32,
            description="6 characters (TOTP or e-mail code), or a recovery code.",
        ),
    ]


class UpdateMeRequest(BaseModel):
    """v12's ``UpdateMeRequest``: a field left out, null or empty changes nothing
    (usecase/auth.go UpdateMe sets only what is not ``""``)."""

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
    responses=documented_v12(400, 401, 403, 413, 429, 503),
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
        access_token="",
        refresh_token="",
        token_type="",
        expires_at=GO_ZERO_TIME,
        refresh_expires_at=GO_ZERO_TIME,
        user=await _user(request, answer.pre_auth.claims.user_id),
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
    # v12 binds the code with len=6 (400 otherwise); authgate's recovery codes are longer.
    if len(body.code) != 6 and normalized_recovery_code(body.code) is None:
        message = "code must be 6 characters or a recovery code"
        raise ValidationFailed(message, field_errors=[FieldError("code", message)])
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
    if not body.refresh_token:  # v12's binding:"required", in its words
        message = "refresh_token is required"
        raise ValidationFailed(message, field_errors=[FieldError("refresh_token", message)])
    await services_of(request).sessions.logout(body.refresh_token)
    return Response(status_code=204)


@public_router.get("/health", summary="Liveness", tags=["public"])
async def health() -> dict[str, str]:
    return {"status": "ok"}


class IdentityProviderPublic(BaseModel):
    """v12's ``IdentityProviderPublic`` (dto/idp.go): one "Login with ..." button."""

    id: str
    name: str
    providerType: str
    loginUrl: str


@public_router.get(
    "/idp-providers",
    summary="The identity providers v12's login page offers: none (authgate has no single sign-on)",
)
async def identity_providers() -> list[IdentityProviderPublic]:
    # v12's login page asks here which single sign-on buttons to show (routes.go: public).
    return []


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
    if body.name:
        first, _, rest = body.name.strip().partition(" ")
        last = rest.strip()
    services = services_of(request)
    changes = UserChanges(
        email=body.email or None, first_name=first, last_name=last, lang_key=body.lang_key or None
    )
    # Reset links and e-mailed codes go to a new address: a credential, which a session
    # that skipped the user's second factor may not set (the account is read only then).
    if not principal.is_password_session and changes.replaces_email(
        (await services.accounts.account(principal.user_id)).email
    ):
        require_password_session_for_target(request)
    await services.users.update_user(principal.login, changes, acting_user_id=principal.user_id)
    return await _user(request, principal.user_id)


@self_router.post(
    "/auth/change-password",
    summary="Change the caller's password (every session ends; the access token used "
    "keeps working until it expires)",
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
            # v12 revokes the refresh tokens (this session's too) while the access token
            # used goes on until it expires: its UI stays signed in (sets_credentials:
            # always a token). Every other token of the user stops at once.
            keep_token_id=principal.credential_id,
        )
    except ValidationFailed as failure:
        # 400 in v12's words, where v12 answers 401: v12's client answers any 401 (but
        # the login's and the refresh's) by refreshing and sending the request again,
        # which would count each wrong password twice against the login throttle.
        if failure.reason is Reason.WRONG_CURRENT_PASSWORD:
            raise ValidationFailed("current password is incorrect", reason=failure.reason) from None
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
# A session from before the second factor was enabled must not end the sessions that
# passed it (and so lock their owner out of changing it back).
@sets_credentials("ends the caller's other sessions")
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
    responses=documented_v12(400, 401, 403, 404),
)
async def revoke_session(session_id: UuidPath, request: Request) -> Response:
    principal = principal_of(request)
    # v12 parses the id first (uuid.Parse): text that is none is 400, not "not found".
    session_id = str(parse_uuid(session_id, message="invalid session id"))
    # Any session may end itself, as logout does; ending another needs a session that
    # passed the second factor, as DELETE /auth/sessions does.
    if session_id != principal.session_id:
        require_password_session_for_target(request)
    await services_of(request).sessions.revoke(
        principal.user_id, session_id, actor=Actor.of(principal)
    )
    return Response(status_code=204)
