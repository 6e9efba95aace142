"""Password recovery, public (UTMStack's ``AccountResource`` reset-password routes),
and the check of the caller's own password (UTMStack's ``/api/check-credentials``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import Field

from authgate.api.access import AuthenticatedRoute, principal_of, services_of
from authgate.api.errors import documented
from authgate.api.routing import AuthgateRoute
from authgate.api.schemas import LenientBody
from authgate.exceptions import FieldError, SessionRequired, ValidationFailed
from authgate.reasons import Reason
from authgate.services.user_fields import EMAIL_MAX_LENGTH

_ECHOED = {
    "description": "The password is the caller's: checkUUID, echoed as text",
    "content": {"text/plain": {"schema": {"type": "string"}}},
}

public_router = APIRouter(
    prefix="/api/account/reset-password", tags=["account"], route_class=AuthgateRoute
)
check_router = APIRouter(tags=["account"], route_class=AuthenticatedRoute)

Password = Annotated[str, Field(min_length=1, max_length=1024)]
CheckUuid = Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9-]*$")]


class KeyAndPassword(LenientBody):
    """UTMStack's ``KeyAndPasswordVM``."""

    key: Annotated[str, Field(min_length=1, max_length=128)]
    newPassword: Password


class CredentialsCheck(LenientBody):
    password: Password
    checkUUID: CheckUuid = ""


@public_router.post(
    "/init",
    summary="Ask for a password-reset link by e-mail (the address as a raw text body)",
    status_code=200,
    response_class=Response,
    responses={
        200: {"description": "Always, whether or not the address has an account."},
        **documented(413),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/plain": {"schema": {"type": "string", "maxLength": 254}}},
        }
    },
)
async def request_reset(request: Request) -> Response:
    # The e-mail address is the raw body (text/plain, as UTMStack's UI posts it); a JSON
    # string is accepted too. Never 4xx/5xx for an unknown or malformed address.
    raw = (await request.body())[: EMAIL_MAX_LENGTH * 4 + 2].decode("utf-8", "replace")
    address = raw.strip().strip('"').strip()
    await services_of(request).password_resets.request(address)
    return Response(status_code=200, headers={"Cache-Control": "no-store"})


@public_router.post(
    "/finish",
    summary="Set a new password with the key of a reset link (single use, 24 h)",
    status_code=200,
    response_class=Response,
    responses={200: {"description": "Password set"}, **documented(400, 413)},
)
async def finish_reset(body: KeyAndPassword, request: Request) -> Response:
    await services_of(request).password_resets.finish(body.key, body.newPassword)
    return Response(status_code=200, headers={"Cache-Control": "no-store"})


@check_router.get(
    "/api/check-credentials",
    summary="Check the caller's password (UTMStack's form; prefer POST: a query string "
    "ends up in proxy logs)",
    # Plain Response, so FastAPI documents the JSON error bodies as JSON, not text/plain.
    response_class=Response,
    responses={200: _ECHOED, **documented(400, 401, 403, 423, 429)},
)
async def check_credentials_query(
    request: Request,
    password: Annotated[str, Query(min_length=1, max_length=1024)],
    checkUUID: Annotated[str, Query(max_length=64, pattern=r"^[A-Za-z0-9-]*$")] = "",
) -> PlainTextResponse:
    return await _check(request, password, checkUUID)


@check_router.post(
    "/api/check-credentials",
    summary="Check the caller's password ({password, checkUUID}); 200 with checkUUID",
    # Plain Response, so FastAPI documents the JSON error bodies as JSON, not text/plain.
    response_class=Response,
    responses={200: _ECHOED, **documented(400, 401, 403, 423, 429)},
)
async def check_credentials(body: CredentialsCheck, request: Request) -> PlainTextResponse:
    return await _check(request, body.password, body.checkUUID)


async def _check(request: Request, password: str, check_uuid: str) -> PlainTextResponse:
    principal = principal_of(request)
    if not principal.is_password_session:
        # A key must not become a way to guess its owner's password.
        raise SessionRequired(reason=Reason.SESSION_REQUIRED)
    if not await services_of(request).accounts.check_password(principal.user_id, password):
        message = "Password is incorrect."
        raise ValidationFailed(
            message, field_errors=[FieldError("password", message)], reason=Reason.WRONG_PASSWORD
        )
    return PlainTextResponse(check_uuid, headers={"Cache-Control": "no-store"})
