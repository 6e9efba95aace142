"""``/api/v1/auth/reset-password``: UTMStack v12's password recovery, on authgate's
(``services/password_resets.py``): the same single-use 24-hour keys, stored hashed,
the same limits and mail, the same password policy.

v12 (``backend/modules/iam`` handler/auth.go, dto/auth.go, as issue 17 describes it):
``init`` always answers 204, whether or not the address has an account (the lookup and
the mail happen after the response); ``finish`` answers 204, or 410 for a key that is
unknown, used, replaced or expired.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from authgate.api.access import services_of
from authgate.api.errors import documented_v12, v12_error_response
from authgate.api.routing import AuthgateRoute
from authgate.api.v1.auth import PREFIX, V12_ERROR_REF
from authgate.services.password_resets import (
    RESET_KEY_MAX_LENGTH,
    ResetKeyExpired,
    ResetKeyInvalid,
)
from authgate.services.user_fields import EMAIL_MAX_LENGTH

router = APIRouter(
    prefix=PREFIX + "/auth/reset-password",
    tags=["v12 authentication"],
    route_class=AuthgateRoute,
)


class ResetInitRequest(BaseModel):
    email: Annotated[str, Field(max_length=EMAIL_MAX_LENGTH)]


class ResetFinishRequest(BaseModel):
    key: Annotated[str, Field(min_length=1, max_length=RESET_KEY_MAX_LENGTH)]
    new_password: Annotated[str, Field(min_length=1, max_length=1024)]


_GONE: dict[int | str, dict[str, Any]] = {
    410: {
        "description": "The key is unknown, used, replaced or expired: ask for a new link",
        "content": {"application/json": {"schema": {"$ref": V12_ERROR_REF}}},
    }
}


@router.post(
    "/init",
    summary="Ask for a password-reset link by e-mail (204 whether or not the address "
    "has an account)",
    status_code=204,
    response_class=Response,
    responses=documented_v12(400, 413),
)
async def request_reset(body: ResetInitRequest, request: Request) -> Response:
    await services_of(request).password_resets.request(body.email)
    return Response(status_code=204, headers={"Cache-Control": "no-store"})


@router.post(
    "/finish",
    summary="Set a new password with the key of a reset link (single use, 24 h)",
    status_code=204,
    response_class=Response,
    responses={**documented_v12(400, 413), **_GONE},
)
async def finish_reset(body: ResetFinishRequest, request: Request) -> Response:
    try:
        await services_of(request).password_resets.finish(body.key, body.new_password)
    except (ResetKeyInvalid, ResetKeyExpired) as gone:
        return v12_error_response(request, status=410, message=gone.message)
    return Response(status_code=204, headers={"Cache-Control": "no-store"})
