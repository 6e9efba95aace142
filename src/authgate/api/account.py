"""The caller's own account (JHipster's ``/api/account``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request, Response
from pydantic import Field

from authgate.api.access import (
    SelfServiceRoute,
    principal_of,
    require_password_session_for_target,
    services_of,
    sets_credentials,
)
from authgate.api.errors import documented
from authgate.api.schemas import LenientBody, UserDTO
from authgate.api.users import Email, ImageUrl, LangKey, Name
from authgate.exceptions import Conflict, FieldError, ValidationFailed
from authgate.services.user_fields import UserChanges

# Self-service: API keys may read the account; password and sessions need a user session.
router = APIRouter(prefix="/api/account", tags=["account"], route_class=SelfServiceRoute)


class LogoutEverywhere(LenientBody):
    revokeApiKeys: bool = Field(
        default=False, description="Also revoke every API key of yours (at once, everywhere)."
    )


class PasswordChange(LenientBody):
    currentPassword: Annotated[str, Field(min_length=1, max_length=1024)]
    newPassword: Annotated[str, Field(min_length=1, max_length=1024)]


@router.get("", summary="The current user", response_model=UserDTO, responses=documented(401, 404))
async def get_account(request: Request) -> UserDTO:
    account = await services_of(request).accounts.account(principal_of(request).user_id)
    return UserDTO.of(account)


class AccountBody(LenientBody):
    """UTMStack's UserDTO as ``POST /api/account`` reads it: only the profile fields;
    ``login``, ``authorities``, ``activated``, ``id`` and the rest are ignored."""

    email: Email
    firstName: Name | None = None
    lastName: Name | None = None
    langKey: LangKey | None = None
    imageUrl: ImageUrl | None = None


@router.post(
    "",
    summary="Save the caller's profile (firstName, lastName, email, langKey, imageUrl)",
    status_code=200,
    response_class=Response,
    responses={200: {"description": "Saved"}, **documented(400, 401, 403, 404, 413)},
)
async def save_account(body: AccountBody, request: Request) -> Response:
    services = services_of(request)
    principal = principal_of(request)
    account = await services.accounts.account(principal.user_id)
    sent = body.model_fields_set

    def cleared(name: str, value: str | None) -> str | None:
        # Spring binds the whole DTO: a null sent for a name clears it.
        return "" if value is None and name in sent else value

    changes = UserChanges(
        email=body.email,
        first_name=cleared("firstName", body.firstName),
        last_name=cleared("lastName", body.lastName),
        lang_key=body.langKey,
        image_url=cleared("imageUrl", body.imageUrl),
    )
    if changes.replaces_email(account.email):
        # Reset links and e-mailed codes go to the new address: a credential, which a
        # session that skipped the user's second factor may not set.
        require_password_session_for_target(request)
    try:
        await services.users.update_user(account.login, changes, acting_user_id=principal.user_id)
    except Conflict as conflict:
        # JHipster's EmailAlreadyUsedException is a 400 (BadRequestAlertException).
        raise ValidationFailed(
            conflict.message,
            field_errors=[FieldError("email", conflict.message)],
            reason=conflict.reason,
        ) from None
    return Response(status_code=200)


@router.post(
    "/change-password",
    summary="Change the caller's password; all their other tokens are revoked",
    status_code=200,
    response_class=Response,
    responses={
        200: {"description": "Password changed"},
        **documented(400, 401, 403, 404, 413, 423, 429, 503),
    },
)
@sets_credentials("changes the caller's password")
async def change_password(body: PasswordChange, request: Request) -> Response:
    principal = principal_of(request)
    await services_of(request).accounts.change_password(
        principal.user_id,
        current_password=body.currentPassword,
        new_password=body.newPassword,
        # The session that made the change goes on (sets_credentials: always a token).
        keep_token_id=principal.credential_id if principal.method == "jwt" else None,
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
# A session from before the second factor was enabled must not end the sessions that
# passed it (nor revoke every key): as DELETE /api/v1/auth/sessions.
@sets_credentials("ends every session of the caller (and perhaps revokes their API keys)")
async def logout_everywhere(
    request: Request, body: Annotated[LogoutEverywhere | None, Body()] = None
) -> Response:
    await services_of(request).accounts.log_out_everywhere(
        principal_of(request).user_id,
        revoke_api_keys=body is not None and body.revokeApiKeys,
    )
    return Response(status_code=204)
