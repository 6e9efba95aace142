"""Login and logout (UTMStack's ``/api/authenticate``) and the public signing keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from authgate.api.access import (
    AuthenticatedRoute,
    SelfServiceRoute,
    principal_of,
    services_of,
)
from authgate.api.errors import documented

public_router = APIRouter(tags=["authentication"])
router = APIRouter(tags=["authentication"], route_class=AuthenticatedRoute)
session_router = APIRouter(tags=["authentication"], route_class=SelfServiceRoute)


class LoginRequest(BaseModel):
    """UTMStack's login body. Unknown fields are ignored, as UTMStack does."""

    username: Annotated[str, Field(min_length=1, max_length=254, description="Login or e-mail.")]
    password: Annotated[str, Field(min_length=1, max_length=1024)]
    rememberMe: bool | None = None


class LoginResponse(BaseModel):
    """Both UTMStack shapes at once: v10's ``id_token`` and v11's ``token``/``success``."""

    id_token: str
    token: str
    authenticated: bool = Field(description="False would mean a second factor is required.")
    success: bool
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_at: datetime
    expires_in: int = Field(description="Seconds until the token expires.")


@public_router.post(
    "/api/authenticate",
    summary="Log in with username (or e-mail) and password",
    response_model=LoginResponse,
    responses=documented(400, 401, 413, 423, 429, 503),
)
async def authenticate(body: LoginRequest, request: Request, response: Response) -> Any:
    services = services_of(request)
    user = await services.accounts.authenticate(body.username, body.password)
    issued = services.tokens.issue(user, remember_me=bool(body.rememberMe))
    response.headers["Authorization"] = f"Bearer {issued.token}"
    response.headers["Cache-Control"] = "no-store"
    claims = issued.claims
    return LoginResponse(
        id_token=issued.token,
        token=issued.token,
        authenticated=True,
        success=True,
        expires_at=claims.expires_at,
        expires_in=round((claims.expires_at - claims.issued_at).total_seconds()),
    )


@public_router.get(
    "/.well-known/jwks.json",
    summary="Public keys that verify authgate's tokens (JWK Set)",
    tags=["public"],
)
async def jwks(request: Request) -> dict[str, list[dict[str, Any]]]:
    return services_of(request).tokens.codec.keyring.jwks()


@router.get(
    "/api/authenticate",
    summary="The caller's login, if authenticated",
    response_model=str,
    responses=documented(401),
)
async def who_am_i(request: Request) -> str:
    return principal_of(request).login


@session_router.post(
    "/api/logout",
    summary="Revoke the token used for this request",
    status_code=204,
    response_class=Response,
    responses=documented(401),
)
async def logout(request: Request) -> Response:
    await services_of(request).tokens.logout(principal_of(request))
    return Response(status_code=204)
