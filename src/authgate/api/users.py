"""User administration (ROLE_ADMIN), at JHipster's ``/api/users`` paths."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import Field

from authgate.api.access import AdminRoute, principal_of, services_of
from authgate.api.errors import documented
from authgate.api.pagination import PageRequestDep, pagination_headers
from authgate.api.schemas import StrictBody, UserDTO
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
    responses=documented(400, 401, 403, 409, 413),
)
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
    summary="Reset a user's password; all their tokens are revoked",
    status_code=204,
    response_class=Response,
    responses=documented(400, 401, 403, 404, 413),
)
async def reset_password(login: LoginPath, body: PasswordReset, request: Request) -> Response:
    await services_of(request).users.set_password(login, body.newPassword)
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
