"""User administration (ROLE_ADMIN), at JHipster's ``/api/users`` paths."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import Field

from authgate.api.access import AdminRoute, principal_of, services_of, sets_credentials
from authgate.api.errors import documented
from authgate.api.pagination import PageRequestDep, pagination_headers
from authgate.api.schemas import StrictBody, UserDTO
from authgate.security.principal import ROLE_ADMIN
from authgate.services.text_rules import NO_CONTROL_CHARACTERS_PATTERN
from authgate.services.users import (
    EMAIL_MAX_LENGTH,
    EMAIL_PATTERN,
    LANG_KEY_PATTERN,
    LOGIN_MAX_LENGTH,
    LOGIN_PATTERN,
    NAME_MAX_LENGTH,
    NewUser,
    UserChanges,
)

router = APIRouter(prefix="/api/users", tags=["users"], route_class=AdminRoute)

LoginPath = Annotated[str, Path(min_length=1, max_length=LOGIN_MAX_LENGTH)]
Email = Annotated[str, Field(min_length=3, max_length=EMAIL_MAX_LENGTH, pattern=EMAIL_PATTERN)]
Name = Annotated[
    str,
    Field(
        max_length=NAME_MAX_LENGTH,
        json_schema_extra={"pattern": NO_CONTROL_CHARACTERS_PATTERN},  # the service checks
    ),
]
LangKey = Annotated[str, Field(min_length=2, max_length=10, pattern=LANG_KEY_PATTERN)]
Role = Literal["ROLE_ADMIN", "ROLE_USER"]
Authorities = Annotated[list[Role], Field(min_length=1, max_length=2)]
Password = Annotated[str, Field(min_length=1, max_length=1024)]


def _ordinary_user() -> list[Role]:
    return ["ROLE_USER"]


class UserCreate(StrictBody):
    login: Annotated[str, Field(min_length=1, max_length=LOGIN_MAX_LENGTH, pattern=LOGIN_PATTERN)]
    email: Email
    password: Password
    firstName: Name | None = None
    lastName: Name | None = None
    langKey: LangKey = "en"
    authorities: Authorities = Field(default_factory=_ordinary_user)
    activated: bool = True


class UserUpdate(StrictBody):
    """Fields to change; omitted fields keep their value. An empty name clears it."""

    email: Email | None = None
    firstName: Name | None = None
    lastName: Name | None = None
    langKey: LangKey | None = None
    authorities: Authorities | None = None
    activated: bool | None = None


class PasswordReset(StrictBody):
    newPassword: Password
    revokeApiKeys: bool = Field(
        default=False, description="Also revoke every API key of the user (at once, everywhere)."
    )


def grants_rights(body: Mapping[str, Any]) -> bool:
    """Whether a ``PUT /api/users/{login}`` body could hand out access: ROLE_ADMIN among
    the authorities, or a (re)activation. Deactivating, taking roles away and profile
    fields do not, so an admin-scoped key can still lock an account in an emergency.
    Anything unexpected counts as granting (validation refuses it anyway; never guess
    in the caller's favour)."""
    authorities = body.get("authorities")
    if authorities is not None and not isinstance(authorities, list):
        return True
    if ROLE_ADMIN in (authorities or ()):
        return True
    activated = body.get("activated")
    return activated is not None and activated is not False


@router.get(
    "",
    summary="List users (paged)",
    response_model=list[UserDTO],
    responses=documented(400, 401, 403),
)
async def list_users(request: Request, response: Response, paging: PageRequestDep) -> list[UserDTO]:
    page = await services_of(request).users.list_users(paging)
    response.headers.update(pagination_headers(request, page))
    return [UserDTO.of(user) for user in page.items]


@router.post(
    "",
    summary="Create a user",
    status_code=201,
    response_model=UserDTO,
    responses=documented(400, 401, 403, 409, 413, 503),
)
@sets_credentials("creates a user with a password")
async def create_user(body: UserCreate, request: Request, response: Response) -> UserDTO:
    user = await services_of(request).users.create_user(
        NewUser(
            login=body.login,
            email=body.email,
            password=body.password,
            authorities=frozenset(body.authorities),
            first_name=body.firstName,
            last_name=body.lastName,
            lang_key=body.langKey,
            activated=body.activated,
        )
    )
    response.headers["Location"] = f"/api/users/{user.login}"
    return UserDTO.of(user)


@router.get(
    "/{login}",
    summary="One user",
    response_model=UserDTO,
    responses=documented(400, 401, 403, 404),
)
async def get_user(login: LoginPath, request: Request) -> UserDTO:
    return UserDTO.of(await services_of(request).users.get_user(login))


@router.put(
    "/{login}",
    summary="Update a user (profile, roles, activation)",
    response_model=UserDTO,
    responses=documented(400, 401, 403, 404, 409, 413),
)
@sets_credentials("grants ROLE_ADMIN or (re)activates a user", when=grants_rights)
async def update_user(login: LoginPath, body: UserUpdate, request: Request) -> UserDTO:
    changes = UserChanges(
        email=body.email,
        first_name=body.firstName,
        last_name=body.lastName,
        lang_key=body.langKey,
        activated=body.activated,
        authorities=frozenset(body.authorities) if body.authorities is not None else None,
    )
    user = await services_of(request).users.update_user(
        login, changes, acting_user_id=principal_of(request).user_id
    )
    return UserDTO.of(user)


@router.put(
    "/{login}/password",
    summary="Reset a user's password; all their tokens (and with revokeApiKeys, keys) revoked",
    status_code=204,
    response_class=Response,
    responses=documented(400, 401, 403, 404, 413, 503),
)
@sets_credentials("resets a user's password")
async def reset_password(login: LoginPath, body: PasswordReset, request: Request) -> Response:
    await services_of(request).users.set_password(
        login, body.newPassword, revoke_api_keys=body.revokeApiKeys
    )
    return Response(status_code=204)


@router.delete(
    "/{login}",
    summary="Delete a user",
    status_code=204,
    response_class=Response,
    responses=documented(400, 401, 403, 404, 409),
)
async def delete_user(login: LoginPath, request: Request) -> Response:
    await services_of(request).users.delete_user(
        login, acting_user_id=principal_of(request).user_id
    )
    return Response(status_code=204)
