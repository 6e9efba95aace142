"""``/api/v1/users`` and ``/api/v1/roles``: v12's user administration and its roles.

Follows UTMStack v12's ``backend/modules/iam`` (routes.go, dto/user.go, dto/role.go,
handler/user.go) as described in issue 17. Users are named by their public UUID; each
route checks its permission (``users.read``, ``users.write``, ``users.delete``,
``roles.read``; ``security/permissions.py``), and giving roles also needs
``roles.write`` and never hands out a permission the caller lacks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from authgate.api.access import (
    AdminRoute,
    check_role_change,
    principal_of,
    require_password_session_for_target,
    require_permission,
    requires_permission,
    services_of,
    sets_credentials,
)
from authgate.api.errors import documented_v12
from authgate.api.v1.auth import PREFIX, Secret, UserResponse
from authgate.api.v1.paging import PageInfo
from authgate.exceptions import Conflict, FieldError, NotFound, ValidationFailed
from authgate.reasons import Reason
from authgate.security.permissions import (
    BUILT_IN_ROLES,
    PRIVILEGED_ROLES,
    ROLE_ADMIN,
    ROLES_BY_NAME,
    ROLES_READ,
    ROLES_WRITE,
    USERS_DELETE,
    USERS_READ,
    USERS_WRITE,
    Role,
)
from authgate.security.principal import KNOWN_AUTHORITIES, ROLE_USER
from authgate.services.reset_keys import INVITATION_TTL
from authgate.services.user_fields import (
    EMAIL_MAX_LENGTH,
    LOGIN_MAX_LENGTH,
    LOGIN_PATTERN,
    NewUser,
    UserChanges,
    UserView,
)
from authgate.storage.paging import PageRequest, SortOrder

router = APIRouter(prefix=PREFIX, tags=["v12 users and roles"], route_class=AdminRoute)

MAX_PAGE_SIZE = 100
RoleNames = Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=16)]


class CreateUserRequest(BaseModel):
    """v12's ``CreateUserRequest``. The e-mail is also the login (v10/v11 routes name
    the user by it). Without ``password`` an invitation is mailed: a single-use link,
    valid 7 days, to the page that sets the password and activates the account."""

    email: Annotated[str, Field(max_length=EMAIL_MAX_LENGTH)]
    name: Annotated[str, Field(max_length=101)] | None = None
    lang_key: Annotated[str, Field(max_length=10)] | None = None
    role_names: RoleNames | None = None
    password: Secret | None = None


class UpdateUserRequest(BaseModel):
    email: Annotated[str, Field(max_length=EMAIL_MAX_LENGTH)] | None = None
    name: Annotated[str, Field(max_length=101)] | None = None
    lang_key: Annotated[str, Field(max_length=10)] | None = None


class UpdateRolesRequest(BaseModel):
    role_names: RoleNames


class UserPage(BaseModel):
    data: list[UserResponse]
    page_info: PageInfo


class RoleResponse(BaseModel):
    name: str
    description: str
    permissions: list[str]

    @classmethod
    def of(cls, role: Role) -> RoleResponse:
        return cls(
            name=role.name, description=role.description, permissions=sorted(role.permissions)
        )


def user_response(user: UserView) -> UserResponse:
    """v12's ``UserResponse`` of a user: ``pending`` until an invited user sets a password."""
    active = "active" if user.activated else "inactive"
    return UserResponse(
        id=user.public_id,
        email=user.email,
        name=" ".join(part for part in (user.first_name, user.last_name) if part),
        status="pending" if user.activation_pending else active,
        lang_key=user.lang_key,
        image_url=user.image_url,
        tfa_enabled=user.second_factor is not None,
    )


def grants_privileged_role(body: Mapping[str, Any]) -> bool:
    """Whether a roles body could hand out permissions (anything unexpected counts)."""
    names = body.get("role_names")
    return not isinstance(names, list) or bool(PRIVILEGED_ROLES.intersection(map(str, names)))


@router.get(
    "/users",
    summary="Users, paged (?search= matches login, e-mail and name)",
    responses=documented_v12(400, 401, 403),
)
@requires_permission(USERS_READ)
async def list_users(
    request: Request,
    page: Annotated[int, Query(ge=1, le=1_000_000, description="One-based page number.")] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
    search: Annotated[str | None, Query(max_length=254)] = None,
) -> UserPage:
    listed = await services_of(request).users.list_users(
        PageRequest(page=page - 1, size=page_size, sort=(SortOrder("createdDate"),)),
        search=search,
    )
    return UserPage(
        data=[user_response(user) for user in listed.items],
        page_info=PageInfo.of(page=page, page_size=page_size, total_items=listed.total),
    )


@router.post(
    "/users",
    summary="Create a user (without a password: invited by e-mail, link valid 7 days)",
    status_code=201,
    responses=documented_v12(400, 401, 403, 409, 413),
)
@requires_permission(USERS_WRITE)
@sets_credentials("creates a user with a password or an invitation")
async def create_user(
    body: CreateUserRequest, request: Request, response: Response
) -> UserResponse:
    services = services_of(request)
    roles = _known_roles(body.role_names) if body.role_names else frozenset({ROLE_USER})
    check_role_change(principal_of(request), frozenset(), roles)
    email = body.email.strip().lower()
    first, last = _split_name(body.name)
    new = NewUser(
        login=_login_of(email),
        email=email,
        password=body.password,
        authorities=roles,
        first_name=first,
        last_name=last,
        lang_key=body.lang_key or "en",
    )
    response.headers["Cache-Control"] = "no-store"
    if body.password is not None:
        user = await services.users.create_user(new)
    else:
        if not services.password_resets.mail_configured:
            message = "This server sends no e-mail: give a password to create the user"
            raise ValidationFailed(
                message, field_errors=[FieldError("password", message)], reason=Reason.NO_MAIL
            )
        user, issued = await services.users.invite_user(new, valid_for=INVITATION_TTL)
        await services.password_resets.deliver(user, issued, invitation=True)
    response.headers["Location"] = f"{PREFIX}/users/{user.public_id}"
    return user_response(user)


@router.get("/users/{user_id}", summary="One user", responses=documented_v12(401, 403, 404))
@requires_permission(USERS_READ)
async def get_user(user_id: str, request: Request) -> UserResponse:
    return user_response(await services_of(request).users.get_user_by_public_id(user_id))


@router.put(
    "/users/{user_id}",
    summary="Change a user's e-mail, name or language",
    responses=documented_v12(400, 401, 403, 404, 409, 413),
)
@requires_permission(USERS_WRITE)
async def update_user(user_id: str, body: UpdateUserRequest, request: Request) -> UserResponse:
    users = services_of(request).users
    target = await users.get_user_by_public_id(user_id)
    first, last = _split_name(body.name) if body.name is not None else (None, None)
    changes = UserChanges(
        email=body.email, first_name=first, last_name=last, lang_key=body.lang_key
    )
    if changes.replaces_email(target.email):
        # Reset links and e-mailed codes go to the new address: a credential.
        require_password_session_for_target(request)
    updated = await users.update_user(
        target.login, changes, acting_user_id=principal_of(request).user_id
    )
    return user_response(updated)


@router.delete(
    "/users/{user_id}",
    summary="Deactivate a user (never the caller); their tokens and keys stop working",
    status_code=204,
    response_class=Response,
    responses=documented_v12(401, 403, 404, 409),
)
@requires_permission(USERS_DELETE)
async def deactivate_user(user_id: str, request: Request) -> Response:
    users = services_of(request).users
    target = await users.get_user_by_public_id(user_id)
    await users.deactivate(target.login, acting_user_id=principal_of(request).user_id)
    return Response(status_code=204)


@router.put(
    "/users/{user_id}/roles",
    summary="Replace a user's roles (needs roles.write; no permission beyond the caller's)",
    responses=documented_v12(400, 401, 403, 404, 409, 413),
)
@requires_permission(USERS_WRITE)
@sets_credentials("grants a role with permissions", when=grants_privileged_role)
async def set_roles(user_id: str, body: UpdateRolesRequest, request: Request) -> UserResponse:
    principal = principal_of(request)
    require_permission(principal, ROLES_WRITE)
    users = services_of(request).users
    target = await users.get_user_by_public_id(user_id)
    wanted = _known_roles(body.role_names)
    check_role_change(principal, target.authorities, wanted)
    if target.id == principal.user_id and ROLE_ADMIN in target.authorities - wanted:
        # Nobody locks themselves out of the admin API by mistake; another admin may.
        raise Conflict("You cannot remove your own admin role", reason=Reason.SELF_DEMOTE)
    updated = await users.update_user(
        target.login, UserChanges(authorities=wanted), acting_user_id=principal.user_id
    )
    return user_response(updated)


@router.get("/roles", summary="The roles and their permissions", responses=documented_v12(401, 403))
@requires_permission(ROLES_READ)
async def list_roles() -> list[RoleResponse]:
    return [RoleResponse.of(role) for role in BUILT_IN_ROLES]


@router.get("/roles/{name}", summary="One role", responses=documented_v12(401, 403, 404))
@requires_permission(ROLES_READ)
async def get_role(name: str) -> RoleResponse:
    role = ROLES_BY_NAME.get(name)
    if role is None:
        raise NotFound("role not found", reason=Reason.ROLE_NOT_FOUND)
    return RoleResponse.of(role)


def _known_roles(names: list[str]) -> frozenset[str]:
    wanted = frozenset(name.strip() for name in names)
    unknown = sorted(wanted - KNOWN_AUTHORITIES)
    if unknown or not wanted:
        message = "unknown role; use " + ", ".join(sorted(KNOWN_AUTHORITIES))
        raise ValidationFailed(
            message, field_errors=[FieldError("role_names", message)], reason=Reason.UNKNOWN_ROLE
        )
    return wanted


def _split_name(name: str | None) -> tuple[str | None, str | None]:
    """v12 has one ``name``; authgate keeps JHipster's first and last name."""
    if name is None:
        return None, None
    first, _, rest = name.strip().partition(" ")
    return first, rest.strip()


def _login_of(email: str) -> str:
    """The login of a user created through v12: the e-mail, which must then fit a
    login (v10/v11 routes and the Settings UI name users by it)."""
    if len(email) > LOGIN_MAX_LENGTH or not re.fullmatch(LOGIN_PATTERN, email):
        message = (
            f"This e-mail cannot serve as the login: at most {LOGIN_MAX_LENGTH} characters, "
            "letters, digits and _ . @ - only"
        )
        raise ValidationFailed(message, field_errors=[FieldError("email", message)])
    return email
