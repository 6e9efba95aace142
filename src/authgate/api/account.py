"""The caller's own account (JHipster's ``/api/account``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request, Response
from pydantic import Field

from authgate.api.access import SelfServiceRoute, principal_of, services_of, sets_credentials
from authgate.api.errors import documented
from authgate.api.schemas import StrictBody, UserDTO

# Self-service: API keys may read the account; password and sessions need a user session.
router = APIRouter(prefix="/api/account", tags=["account"], route_class=SelfServiceRoute)


class LogoutEverywhere(StrictBody):
    revokeApiKeys: bool = Field(
        default=False, description="Also revoke every API key of yours (at once, everywhere)."
    )


class PasswordChange(StrictBody):
    currentPassword: Annotated[str, Field(min_length=1, max_length=1024)]
    newPassword: Annotated[str, Field(min_length=1, max_length=1024)]


@router.get("", summary="The current user", response_model=UserDTO, responses=documented(401, 404))
async def get_account(request: Request) -> UserDTO:
    account = await services_of(request).accounts.account(principal_of(request).user_id)
    return UserDTO.of(account)


@router.post(
    "/change-password",
    summary="Change the caller's password; all their tokens are revoked",
    status_code=200,
    response_class=Response,
    responses={
        200: {"description": "Password changed"},
        **documented(400, 401, 403, 404, 413, 423, 429, 503),
    },
)
@sets_credentials("changes the caller's password")
async def change_password(body: PasswordChange, request: Request) -> Response:
    await services_of(request).accounts.change_password(
        principal_of(request).user_id,
        current_password=body.currentPassword,
        new_password=body.newPassword,
    )
    return Response(status_code=200)


@router.post(
    "/logout-all",
    summary="Log out everywhere: revoke every token of the caller (and with revokeApiKeys, "
    "every API key)",
    status_code=204,
    response_class=Response,
    responses=documented(400, 401, 403, 404),
)
async def logout_everywhere(
    request: Request, body: Annotated[LogoutEverywhere | None, Body()] = None
) -> Response:
    await services_of(request).accounts.log_out_everywhere(
        principal_of(request).user_id,
        revoke_api_keys=body is not None and body.revokeApiKeys,
    )
    return Response(status_code=204)
