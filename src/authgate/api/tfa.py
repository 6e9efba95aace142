"""Second-factor endpoints: UTMStack's v10 and v11 flows, and authgate's own.

Second step of a login (a pre-verification token, nothing else):

* ``GET /api/tfa/verifyCode?code=`` (v10) and ``POST /api/tfa/verify-code`` with the
  bare digits as a text body (v11) trade the token and a code for an access token;
* ``GET /api/tfa/refresh`` sends a new e-mail code (429 + Retry-After within 28 s);
* ``POST /api/enrollment/tfa`` (v11 forced enrolment, stages 0/1/2 or their names).

Set-up with an access token (v11's ``/api/tfa/init``, ``/verify``, ``/complete``) and
authgate's ``/api/account/tfa`` (state, new recovery codes, turning it off); the admin's
reset is ``DELETE /api/users/{login}/tfa``.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Annotated, Any, Literal

import segno
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from authgate.api.access import (
    AdminRoute,
    PreVerificationRoute,
    SelfServiceRoute,
    header_value,
    pending_of,
    principal_of,
    requires_permission,
    services_of,
    sets_credentials,
)
from authgate.api.errors import documented, error_response
from authgate.api.schemas import any_case_pattern
from authgate.exceptions import FieldError, SecondFactorFailed, SecondFactorLocked, ValidationFailed
from authgate.security.permissions import USERS_WRITE
from authgate.services.audit.events import Actor
from authgate.services.second_factor import (
    Enrolment,
    EnrolmentCheck,
    challenge_seconds,
    parse_method,
)
from authgate.services.sign_in import SignInResult

pre_verification_router = APIRouter(tags=["second factor"], route_class=PreVerificationRoute)
setup_router = APIRouter(tags=["second factor"], route_class=SelfServiceRoute)
admin_router = APIRouter(tags=["second factor"], route_class=AdminRoute)

BYPASS_HEADER = b"x-bypass-tfa"
MAX_CODE_LENGTH = 32


class LoginResponse(BaseModel):
    """Every UTMStack login shape at once: v10's ``JWTToken`` (``id_token``,
    ``authenticated``) and v11's ``LoginResponseDTO`` (``token``, ``success``,
    ``tfaConfigured``, ``forceTfa``, ``method``, ``tfaExpiresInSeconds``, ``firstLogin``).
    With ``authenticated`` false the token is a pre-verification token (5 minutes) that
    only the second-factor endpoints accept."""

    id_token: str
    token: str
    authenticated: bool = Field(description="False: a second factor (or enrolment) is required.")
    success: bool = True
    tfaConfigured: bool = Field(description="The user has a second factor.")
    forceTfa: bool = Field(description="The second step must be taken before using the API.")
    method: Literal["TOTP", "EMAIL"] | None = Field(description="The method of the second step.")
    tfaExpiresInSeconds: int = Field(description="30 for TOTP, 120 for EMAIL, else 0.")
    firstLogin: bool = Field(description="The password was set by an admin, not changed yet.")
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_at: datetime
    expires_in: int = Field(description="Seconds until the token expires.")
    recoveryCodes: list[str] | None = Field(
        default=None, description="After an enrolment only: the recovery codes, shown once."
    )

    @classmethod
    def of(cls, result: SignInResult, *, recovery_codes: list[str] | None = None) -> LoginResponse:
        return cls(
            id_token=result.token,
            token=result.token,
            authenticated=result.authenticated,
            tfaConfigured=result.tfa_configured,
            forceTfa=result.force_tfa,
            method=result.method,
            tfaExpiresInSeconds=result.tfa_expires_in_seconds,
            firstLogin=result.first_login,
            expires_at=result.expires_at,
            # exp is whole seconds, iat has milliseconds: rounding gave 3599 for 3600.
            expires_in=math.ceil((result.expires_at - result.issued_at).total_seconds()),
            recoveryCodes=recovery_codes,
        )


def login_answer(
    result: SignInResult, response: Response, *, recovery_codes: list[str] | None = None
) -> LoginResponse:
    """The body, with the token also in ``Authorization`` (UTMStack's clients read it)."""
    response.headers["Authorization"] = f"Bearer {result.token}"
    response.headers["Cache-Control"] = "no-store"
    return LoginResponse.of(result, recovery_codes=recovery_codes)


def qr_png_data_uri(uri: str) -> str:
    """The QR code of an ``otpauth://`` URI as a ``data:image/png;base64,`` URL."""
    return str(segno.make(uri, error="m").png_data_uri(scale=5))


def bypass_requested(request: Request) -> bool:
    value = header_value(request.scope, BYPASS_HEADER)
    return value is not None and value.strip().lower() in ("true", "1", "yes")


# -- the second step of a login ------------------------------------------------------------


@pre_verification_router.get(
    "/api/tfa/verifyCode",
    summary="Second step (UTMStack v10): trade the pre-verification token and a code for "
    "an access token",
    response_model=LoginResponse,
    responses=documented(401, 429),
)
async def verify_code_v10(
    request: Request,
    response: Response,
    code: Annotated[str, Query(min_length=1, max_length=MAX_CODE_LENGTH)],
) -> LoginResponse:
    result = await services_of(request).sign_in.after_code(pending_of(request), code)
    return login_answer(result, response)


@pre_verification_router.post(
    "/api/tfa/verify-code",
    summary="Second step (UTMStack v11): the code as a text body; a wrong, used or locked "
    "code is 412 with the reason in X-UtmStack-error",
    response_model=LoginResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/plain": {"schema": {"type": "string", "example": "123456"}}},
        }
    },
    responses=documented(400, 401, 412),
)
async def verify_code_v11(request: Request, response: Response) -> Any:
    code = _text_code(await request.body())
    try:
        result = await services_of(request).sign_in.after_code(pending_of(request), code)
    except SecondFactorLocked as error:
        return _precondition_failed(request, error.code, error.message, error.retry_after)
    except SecondFactorFailed as error:
        return _precondition_failed(request, error.code, error.message, None)
    return login_answer(result, response)


class Challenge(BaseModel):
    method: Literal["TOTP", "EMAIL"] | None
    tfaExpiresInSeconds: int


@pre_verification_router.get(
    "/api/tfa/refresh",
    summary="Send a new e-mail code (429 with Retry-After when asked again within 28 s)",
    response_model=Challenge,
    responses=documented(401, 429),
)
async def refresh_challenge(request: Request) -> Challenge:
    services = services_of(request)
    user = await services.accounts.account(pending_of(request).user_id)
    method = await services.second_factor.resend(user)
    return Challenge(method=method, tfaExpiresInSeconds=challenge_seconds(method))


class EnrollmentRequest(BaseModel):
    """UTMStack's ``TfaEnrollRequest``; unknown fields are ignored."""

    stage: int | str = Field(description="0/INIT, 1/VERIFY, 2/COMPLETE.")
    method: str = Field(default="TOTP", max_length=16)
    code: str | None = Field(default=None, max_length=MAX_CODE_LENGTH)
    enable: bool = True


_STAGES = {"0": "INIT", "1": "VERIFY", "2": "COMPLETE", "INIT": "INIT", "VERIFY": "VERIFY"}
_STAGES["COMPLETE"] = "COMPLETE"


@pre_verification_router.post(
    "/api/enrollment/tfa",
    summary="Forced enrolment (UTMStack v11) with the pre-verification token: INIT, VERIFY, "
    "COMPLETE (answers a login with an access token and the recovery codes)",
    responses=documented(400, 401, 409, 429),
)
async def forced_enrolment(body: EnrollmentRequest, request: Request, response: Response) -> Any:
    services = services_of(request)
    pending = pending_of(request)
    stage = _STAGES.get(str(body.stage).strip().upper())
    if stage is None:
        message = "Stage must be 0 (INIT), 1 (VERIFY) or 2 (COMPLETE)."
        raise ValidationFailed(message, field_errors=[FieldError("stage", message)])
    method = parse_method(body.method)
    user = await services.sign_in.enrolling_user(pending)
    if stage == "INIT":
        return InitResponse.of(await services.second_factor.start_enrolment(user, method))
    if stage == "VERIFY":
        check = await services.second_factor.verify_enrolment(user, method, body.code or "")
        return VerifyResponse.of(check)
    if not body.enable:
        message = "A second factor is required for this account."
        raise ValidationFailed(message, field_errors=[FieldError("enable", message)])
    result, codes = await services.sign_in.after_enrolment(pending, method)
    return login_answer(result, response, recovery_codes=codes)


# -- set-up with an access token (v11) -----------------------------------------------------


# The second factor's method as the v11 bodies give it: TOTP or EMAIL, in any case.
MethodField = Annotated[
    str,
    Field(
        max_length=16,
        description="TOTP or EMAIL (any case).",
        json_schema_extra={"pattern": any_case_pattern("TOTP", "EMAIL")},
    ),
]


class MethodBody(BaseModel):
    method: MethodField


class VerifyBody(BaseModel):
    method: MethodField
    code: str = Field(max_length=MAX_CODE_LENGTH)


class CompleteBody(BaseModel):
    method: MethodField
    enable: bool = True


class Delivery(BaseModel):
    method: Literal["TOTP", "EMAIL"]
    target: str = Field(
        description="TOTP: the QR code of the otpauth:// URI as a base64 PNG; EMAIL: the "
        "address the code went to."
    )
    secret: str | None = Field(default=None, description="TOTP: the secret, to type in.")
    uri: str | None = Field(default=None, description="TOTP: the otpauth:// URI.")


class InitResponse(BaseModel):
    """UTMStack's ``TfaInitResponse``."""

    status: Literal["pending"] = "pending"
    delivery: Delivery
    expiresInSeconds: int

    @classmethod
    def of(cls, enrolment: Enrolment) -> InitResponse:
        if enrolment.method == "TOTP":
            assert enrolment.uri is not None
            target = qr_png_data_uri(enrolment.uri).partition(",")[2]
        else:
            target = enrolment.email or ""
        return cls(
            delivery=Delivery(
                method=enrolment.method,
                target=target,
                secret=enrolment.secret,
                uri=enrolment.uri,
            ),
            expiresInSeconds=enrolment.expires_in_seconds,
        )


class VerifyResponse(BaseModel):
    """UTMStack's ``TfaVerifyResponse``."""

    valid: bool
    expired: bool
    remainingSeconds: int
    message: str

    @classmethod
    def of(cls, check: EnrolmentCheck) -> VerifyResponse:
        return cls(
            valid=check.valid,
            expired=check.expired,
            remainingSeconds=max(0, check.remaining_seconds),
            message=check.message,
        )


class RecoveryCodes(BaseModel):
    recoveryCodes: list[str] = Field(description="Shown once; each works once.")


@setup_router.post(
    "/api/tfa/init",
    summary="Start enrolling a second factor (TOTP: QR code and secret; EMAIL: a code is sent)",
    response_model=InitResponse,
    responses=documented(400, 401, 403),
)
@sets_credentials("starts enrolling a second factor")
async def init_setup(body: MethodBody, request: Request) -> InitResponse:
    services = services_of(request)
    user = await services.accounts.account(principal_of(request).user_id)
    enrolment = await services.second_factor.start_enrolment(user, parse_method(body.method))
    return InitResponse.of(enrolment)


@setup_router.post(
    "/api/tfa/verify",
    summary="Check a code of the enrolment in progress",
    response_model=VerifyResponse,
    responses=documented(400, 401, 403, 429),
)
@sets_credentials("verifies a second factor being enrolled")
async def verify_setup(body: VerifyBody, request: Request) -> VerifyResponse:
    services = services_of(request)
    user = await services.accounts.account(principal_of(request).user_id)
    check = await services.second_factor.verify_enrolment(
        user, parse_method(body.method), body.code
    )
    return VerifyResponse.of(check)


@setup_router.post(
    "/api/tfa/complete",
    summary="Enable the verified second factor (answers the recovery codes, shown once), or "
    "with enable false drop the enrolment",
    response_model=RecoveryCodes,
    responses=documented(400, 401, 403, 409),
)
@sets_credentials("enables a second factor")
async def complete_setup(body: CompleteBody, request: Request) -> RecoveryCodes:
    services = services_of(request)
    principal = principal_of(request)
    user = await services.accounts.account(principal.user_id)
    # This session proved the factor (the verify step): it keeps setting credentials, as
    # UTMStack's UI expects of the token it holds (a 403 would log the user out).
    codes = await services.second_factor.complete_enrolment(
        user, parse_method(body.method), enable=body.enable, enrolled_by=principal.session_key
    )
    return RecoveryCodes(recoveryCodes=codes)


# -- authgate's own: the state, new recovery codes, turning it off -------------------------


class SecondFactorDTO(BaseModel):
    enabled: bool
    method: Literal["TOTP", "EMAIL"] | None
    required: bool = Field(description="AUTHGATE_TFA_REQUIRED applies to this user.")
    recoveryCodesLeft: int
    sessionPassedSecondFactor: bool = Field(
        description="The token of this request came from a login that passed it."
    )


class DisableBody(BaseModel):
    password: str = Field(min_length=1, max_length=1024)
    code: str = Field(min_length=1, max_length=MAX_CODE_LENGTH)


@setup_router.get(
    "/api/account/tfa",
    summary="The caller's second factor",
    response_model=SecondFactorDTO,
    responses=documented(401),
)
async def second_factor_state(request: Request) -> SecondFactorDTO:
    services = services_of(request)
    principal = principal_of(request)
    state = await services.second_factor.state(await services.accounts.account(principal.user_id))
    return SecondFactorDTO(
        enabled=state.method is not None,
        method=state.method,
        required=state.required,
        recoveryCodesLeft=state.recovery_codes_left,
        sessionPassedSecondFactor=state.method is not None and principal.is_password_session,
    )


@setup_router.post(
    "/api/account/tfa/recovery-codes",
    summary="Replace the caller's recovery codes (the old ones stop working)",
    response_model=RecoveryCodes,
    responses=documented(401, 403, 409),
)
@sets_credentials("replaces the recovery codes")
async def regenerate_recovery_codes(request: Request) -> RecoveryCodes:
    services = services_of(request)
    user = await services.accounts.account(principal_of(request).user_id)
    return RecoveryCodes(recoveryCodes=await services.second_factor.regenerate_recovery_codes(user))


@setup_router.post(
    "/api/account/tfa/disable",
    summary="Turn the caller's second factor off (password and a current code)",
    status_code=204,
    response_class=Response,
    responses=documented(400, 401, 403, 423, 429),
)
@sets_credentials("turns the second factor off")
async def disable(body: DisableBody, request: Request) -> Response:
    services = services_of(request)
    user = await services.accounts.confirm_password(principal_of(request).user_id, body.password)
    await services.second_factor.disable(user, code=body.code)
    return Response(status_code=204)


@admin_router.delete(
    "/api/users/{login}/tfa",
    summary="Reset a user's second factor (they enrol again; notified by e-mail)",
    status_code=204,
    response_class=Response,
    responses=documented(401, 403, 404),
)
@requires_permission(USERS_WRITE)
@sets_credentials("resets a user's second factor")
async def reset(login: str, request: Request) -> Response:
    principal = principal_of(request)
    await services_of(request).second_factor.reset(login, by=Actor.of(principal))
    return Response(status_code=204)


# -- helpers ---------------------------------------------------------------------------------


def _text_code(body: bytes) -> str:
    """The code of a text body: ``123456`` (UTMStack's UI), also ``"123456"``,
    ``{"code": "123456"}`` or ``{"verificationCode": "123456"}`` (older authgate SDKs)."""
    text = body[: MAX_CODE_LENGTH * 4].decode("utf-8", "replace").strip()
    if text.startswith(("{", '"')):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            parsed = parsed.get("code", parsed.get("verificationCode"))
        if isinstance(parsed, str | int):
            return str(parsed).strip()[:MAX_CODE_LENGTH]
    return text[:MAX_CODE_LENGTH]


def _precondition_failed(
    request: Request, code: str, message: str, retry_after: int | None
) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return error_response(request, status=412, code=code, message=message, headers=headers)
