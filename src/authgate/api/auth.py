"""Login and logout (UTMStack's ``/api/authenticate``) and the public signing keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from authgate.api.access import (
    AuthenticatedRoute,
    SelfServiceRoute,
    client_address,
    principal_of,
    services_of,
)
from authgate.api.errors import documented
from authgate.api.routing import AuthgateRoute
from authgate.api.tfa import LoginResponse, bypass_requested, login_answer
from authgate.exceptions import FieldError, ValidationFailed
from authgate.services.user_fields import LOGIN_MAX_LENGTH
from authgate.settings import Settings

public_router = APIRouter(tags=["authentication"], route_class=AuthgateRoute)
router = APIRouter(tags=["authentication"], route_class=AuthenticatedRoute)
session_router = APIRouter(tags=["authentication"], route_class=SelfServiceRoute)


class LoginRequest(BaseModel):
    """UTMStack's login body. Unknown fields are ignored, as UTMStack does."""

    username: Annotated[str, Field(min_length=1, max_length=254, description="Login or e-mail.")]
    password: Annotated[str, Field(min_length=1, max_length=1024)]
    rememberMe: bool | None = None


# UTMStack's LoginVM: @Size(min = 4, max = 100) on the password.
LOGIN_PASSWORD_MIN = 4
LOGIN_PASSWORD_MAX = 100


def login_password_max(settings: Settings) -> int:
    """LoginVM's 100, or the password policy's maximum when that is higher (a password
    the policy accepted must be able to log in)."""
    return max(LOGIN_PASSWORD_MAX, settings.password_policy.max_length)


@public_router.post(
    "/api/authenticate",
    summary="Log in with username (or e-mail) and password",
    description="Answers an access token, or, when the user has a second factor or must "
    "enrol one, a pre-verification token (`authenticated: false`, 5 minutes) for the "
    "second-factor endpoints. UTMStack's X-Bypass-TFA header is ignored unless "
    "AUTHGATE_TFA_BYPASS_HEADER_ADDRESSES lists the caller's address.",
    response_model=LoginResponse,
    responses=documented(400, 401, 413, 423, 429, 503),
)
async def authenticate(body: LoginRequest, request: Request, response: Response) -> Any:
    services = services_of(request)
    longest = login_password_max(services.settings)
    if not LOGIN_PASSWORD_MIN <= len(body.password) <= longest:
        # A malformed request, as Spring's @Valid answers it: not a credential check,
        # so nothing is counted, throttled or audited.
        message = f"password must be {LOGIN_PASSWORD_MIN} to {longest} characters."
        raise ValidationFailed(message, field_errors=[FieldError("password", message)])
    if len(body.username) > LOGIN_MAX_LENGTH and "@" not in body.username:
        # LoginVM's @Size(max = 50): no login is longer (UTMStack's nor authgate's), so
        # longer text is malformed unless it is an e-mail address (authgate's addition).
        message = f"username must be 1 to {LOGIN_MAX_LENGTH} characters, or an e-mail address."
        raise ValidationFailed(message, field_errors=[FieldError("username", message)])
    user = await services.accounts.authenticate(body.username, body.password)
    result = await services.sign_in.after_password(
        user,
        remember_me=bool(body.rememberMe),
        client_ip=client_address(request.scope, services),
        bypass_requested=bypass_requested(request),
    )
    return login_answer(result, response)


@public_router.get(
    "/.well-known/jwks.json",
    summary="Public keys that verify authgate's tokens (JWK Set)",
    tags=["public"],
)
async def jwks(request: Request) -> dict[str, list[dict[str, Any]]]:
    return services_of(request).tokens.codec.keyring.jwks()


@router.get(
    "/api/authenticate",
    summary="The caller's login, if authenticated (raw text, as Spring writes a String)",
    # Plain Response, so FastAPI documents the JSON error bodies as JSON, not text/plain.
    response_class=Response,
    responses={
        200: {
            "description": "The login",
            "content": {"text/plain": {"schema": {"type": "string"}, "example": "admin"}},
        },
        **documented(401),
    },
)
async def who_am_i(request: Request) -> PlainTextResponse:
    return PlainTextResponse(principal_of(request).login)


@session_router.post(
    "/api/logout",
    summary="Revoke the token used for this request (and a v12 token's session)",
    status_code=204,
    response_class=Response,
    responses=documented(401),
)
async def logout(request: Request) -> Response:
    await services_of(request).sessions.logout_access_token(principal_of(request))
    return Response(status_code=204)
