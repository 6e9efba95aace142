"""``/api/v1/tfa``: UTMStack v12's second-factor enrolment and turning it off, and the
admin's ``/api/v1/users/{id}/tfa/disable``.

Follows v12's ``backend/modules/iam`` (routes.go, dto/auth.go, handler/auth.go) as issue
17 describes it, on authgate's second factor (``services/second_factor.py``): the same
enrolment (stored in ``second_factors.pending_*``), the same TOTP secrets (AES-GCM),
hashed e-mail codes, recovery codes and failure counting as the v10/v11 routes. v12's
enrolment stages map one to one onto v11's ``init``/``verify``/``complete``; the answers
are v12's (usecase/tfa.go, handler/tfa.go): VERIFY before INIT 404, COMPLETE before
VERIFY only reports whether a factor is in force, and INIT of the method already
enrolled is 400 (disable it first; the v11 routes may replace it). A wrong code is 400
``invalid tfa code``, where v12 answers 401: v12's client answers a 401 by refreshing
and sending the request again, which counted each wrong code twice (the third typed
locked the second step).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from authgate.api.access import (
    AdminRoute,
    SelfServiceRoute,
    principal_of,
    require_password_session_for_target,
    requires_permission,
    services_of,
    sets_credentials,
)
from authgate.api.errors import documented_v12
from authgate.api.schemas import any_case_pattern
from authgate.api.tfa import MAX_CODE_LENGTH, qr_png_data_uri
from authgate.api.v1.auth import PREFIX
from authgate.api.v1.paths import UuidPath, user_id_of
from authgate.exceptions import (
    Conflict,
    FieldError,
    NotFound,
    ValidationFailed,
)
from authgate.reasons import Reason
from authgate.security.permissions import USERS_WRITE
from authgate.services.audit.events import Actor
from authgate.services.second_factor import Enrolment, Method

setup_router = APIRouter(prefix=PREFIX, tags=["v12 second factor"], route_class=SelfServiceRoute)
admin_router = APIRouter(prefix=PREFIX, tags=["v12 second factor"], route_class=AdminRoute)

Stage = Literal["INIT", "VERIFY", "COMPLETE"]
_METHODS: dict[str, Method] = {"totp": "TOTP", "email": "EMAIL"}


class EnrollRequest(BaseModel):
    """v12's ``TfaEnrollRequest``; ``stage`` and ``type`` in any case."""

    stage: Annotated[
        str,
        Field(
            max_length=16,
            description="INIT, VERIFY or COMPLETE (any case).",
            json_schema_extra={"pattern": any_case_pattern("INIT", "VERIFY", "COMPLETE")},
        ),
    ]
    type: Annotated[
        str,
        Field(
            max_length=16,
            description="totp or email (any case).",
            json_schema_extra={"pattern": any_case_pattern("totp", "email")},
        ),
    ]
    code: Annotated[str, Field(max_length=MAX_CODE_LENGTH)] | None = None


class EnrollInit(BaseModel):
    type: Literal["totp", "email"]
    factor_id: str = Field(description="The user's factor of this type (a stable UUID).")
    qr_data_url: str | None = Field(default=None, description="totp: the QR code, a PNG.")
    otp_auth_url: str | None = Field(default=None, description="totp: the otpauth:// URI.")
    email_sent: bool | None = Field(default=None, description="email: the code was sent.")
    expires_at: datetime = Field(description="Verify a code before this instant.")


class EnrollResponse(BaseModel):
    stage: Stage
    init: EnrollInit | None = None
    verified: bool | None = None
    enabled: bool | None = None
    recovery_codes: list[str] | None = Field(
        default=None, description="COMPLETE only: the recovery codes, shown once."
    )


class DisableRequest(BaseModel):
    password: Annotated[str, Field(min_length=1, max_length=1024)]


def _not_init(body: Mapping[str, Any]) -> bool:
    """Whether an enrolment request sets credentials before the handler looks at it:
    INIT is checked there, since an enrolled user's INIT is refused first (400, as v12)
    whatever the session; any other INIT still needs a password session."""
    stage = body.get("stage")
    return not (isinstance(stage, str) and stage.strip().upper() == "INIT")


@setup_router.post(
    "/tfa/enroll",
    summary="Enrol a second factor: INIT (QR code or e-mailed code), VERIFY a code, "
    "COMPLETE (enabled; answers the recovery codes)",
    # v12 omits what a stage does not answer (omitempty), nulls included.
    response_model_exclude_none=True,
    responses=documented_v12(400, 401, 403, 404, 413, 429),
)
@sets_credentials("enrols a second factor", when=_not_init)
async def enroll(body: EnrollRequest, request: Request) -> EnrollResponse:
    services = services_of(request)
    principal = principal_of(request)
    stage = _choice(body.stage.strip().upper(), ("INIT", "VERIFY", "COMPLETE"), "stage")
    method = _METHODS[_choice(body.type.strip().lower(), ("totp", "email"), "type")]
    user = await services.accounts.account(principal.user_id)
    if stage == "INIT":
        if await services.second_factor.method_of(user.id) == method:
            message = "a tfa factor of this type is already enrolled"
            raise ValidationFailed(message, reason=Reason.SECOND_FACTOR_ENABLED)
        require_password_session_for_target(request)
        enrolment = await services.second_factor.start_enrolment(user, method)
        public_id = (await services.sessions.profile(user.id)).public_id
        return EnrollResponse(stage="INIT", init=_init(enrolment, public_id, services.clock()))
    if stage == "VERIFY":
        check = await services.second_factor.verify_enrolment(user, method, body.code or "")
        if not check.started:
            raise NotFound("tfa factor not found", reason=Reason.ENROLMENT_NOT_STARTED)
        if check.expired:
            raise NotFound("challenge has expired", reason=Reason.ENROLMENT_NOT_STARTED)
        if not check.valid:  # counted like a failed login by verify_enrolment; 400: see above
            raise ValidationFailed("invalid tfa code", reason=Reason.WRONG_ENROLMENT_CODE)
        return EnrollResponse(stage="VERIFY", verified=True)
    try:
        # This session proved the factor at VERIFY: it counts as having passed it.
        codes = await services.second_factor.complete_enrolment(
            user, method, enable=True, enrolled_by=principal.session_key
        )
    except Conflict as refusal:
        if refusal.reason is not Reason.ENROLMENT_NOT_VERIFIED:
            raise
        # v12's COMPLETE only reports whether a factor is in force (its VERIFY enables one).
        enabled = await services.second_factor.method_of(user.id) is not None
        return EnrollResponse(stage="COMPLETE", enabled=enabled)
    if principal.session_id is not None:
        # The code of the new factor was proved from this session: it keeps working.
        await services.sessions.mark_second_factor(user.id, principal.session_id)
    return EnrollResponse(stage="COMPLETE", enabled=True, recovery_codes=codes)


@setup_router.post(
    "/tfa/disable",
    summary="Turn the caller's second factor off (the password; from a session that "
    "passed the factor)",
    status_code=204,
    response_class=Response,
    responses=documented_v12(400, 401, 403, 404, 413, 429),
)
@sets_credentials("turns the second factor off")
async def disable(body: DisableRequest, request: Request) -> Response:
    services = services_of(request)
    try:
        user = await services.accounts.confirm_password(
            principal_of(request).user_id, body.password
        )
    except ValidationFailed as failure:
        # 400 as v12, never 401: v12's client answers a 401 by refreshing the token and
        # sending the request again, which would count the wrong password twice.
        if failure.reason is Reason.WRONG_CURRENT_PASSWORD:
            raise ValidationFailed("current password is incorrect", reason=failure.reason) from None
        raise
    # With no factor there is nothing to turn off: 204 all the same, as v12.
    if await services.second_factor.method_of(user.id) is not None:
        await services.second_factor.turn_off(user)
    return Response(status_code=204)


@admin_router.post(
    "/users/{user_id}/tfa/disable",
    summary="Remove a user's second factor (they enrol again; audited, told by e-mail)",
    status_code=204,
    response_class=Response,
    responses=documented_v12(400, 401, 403, 404),
)
@requires_permission(USERS_WRITE)
@sets_credentials("resets a user's second factor")
async def admin_disable(user_id: UuidPath, request: Request) -> Response:
    principal = principal_of(request)
    await services_of(request).second_factor.reset_by_public_id(
        user_id_of(user_id), by=Actor.of(principal)
    )
    return Response(status_code=204)


def _choice(value: str, allowed: tuple[str, ...], field: str) -> str:
    if value not in allowed:
        message = f"{field} must be one of {', '.join(allowed)}."
        raise ValidationFailed(message, field_errors=[FieldError(field, message)])
    return value


def _init(enrolment: Enrolment, public_id: str, now: datetime) -> EnrollInit:
    is_totp = enrolment.method == "TOTP"
    return EnrollInit(
        type="totp" if is_totp else "email",
        # authgate keeps one factor per user: its id names the user and the method.
        factor_id=str(uuid.uuid5(uuid.UUID(public_id), enrolment.method)),
        qr_data_url=qr_png_data_uri(enrolment.uri) if enrolment.uri else None,
        otp_auth_url=enrolment.uri,
        email_sent=None if is_totp else True,
        expires_at=now + timedelta(seconds=enrolment.expires_in_seconds),
    )
