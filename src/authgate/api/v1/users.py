"""``/api/v1/users`` and ``/api/v1/roles``: v12's user administration and its roles.

Follows UTMStack v12's ``backend/modules/iam`` (routes.go, dto/user.go, dto/rbac.go,
handler/user.go, handler/rbac.go, usecase/user.go). Users are named by their public
UUID, roles by v12's ids (``security/permissions.py``) or their names; each route
checks its permission (``users.read``, ``users.write``, ``users.delete``,
``roles.read``, ``roles.write``), and giving roles also needs ``roles.write`` and never
hands out a permission the caller lacks. The roles are authgate's built-in ones: v12's
custom roles are refused as v12 refuses a change to a system role (403).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

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
from authgate.api.v1.paths import UuidPath, parse_uuid, user_id_of
from authgate.exceptions import Conflict, FieldError, NotFound, PermissionDenied, ValidationFailed
from authgate.reasons import Reason
from authgate.security.permissions import (
    BUILT_IN_ROLES,
    PERMISSION_DESCRIPTIONS,
    ROLE_ADMIN,
    ROLES_BY_ID,
    ROLES_BY_NAME,
    ROLES_READ,
    ROLES_WRITE,
    USERS_DELETE,
    USERS_READ,
    USERS_WRITE,
    Role,
    could_grant_permissions,
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
    the user by it). Without ``password`` the user is ``pending`` and invited by mail: a
    single-use link, valid 7 days, to the page that sets the password and activates the
    account. Without a mail server, as in v12, the user is created all the same; an
    admin hands over a link (``authgate users reset-link``, the Settings UI)."""

    email: Annotated[str, Field(max_length=EMAIL_MAX_LENGTH)]
    name: Annotated[str, Field(max_length=101)] | None = None
    lang_key: Annotated[str, Field(max_length=10)] | None = None
    role_names: RoleNames | None = None
    password: Secret | None = None


class UpdateUserRequest(BaseModel):
    """v12's ``UpdateUserRequest``. ``status`` deactivates (as ``DELETE``) or reactivates
    the user; authgate has no ``suspended`` state and leaves ``pending`` to the
    invitation, so those two are 400."""

    email: Annotated[str, Field(max_length=EMAIL_MAX_LENGTH)] | None = None
    name: Annotated[str, Field(max_length=101)] | None = None
    lang_key: Annotated[str, Field(max_length=10)] | None = None
    status: Literal["active", "inactive"] | None = None


class UpdateRolesRequest(BaseModel):
    role_names: RoleNames


class RoleDigest(BaseModel):
    name: str
    display_name: str


class UserListItem(UserResponse):
    """v12's ``UserListItem``: a user and their roles."""

    roles: list[RoleDigest]


class UserDetailResponse(UserListItem):
    """v12's ``UserDetailResponse``: what one user's routes answer."""

    created_at: datetime
    updated_at: datetime


class UserPage(BaseModel):
    data: list[UserListItem]
    page_info: PageInfo


class PermissionResponse(BaseModel):
    name: str
    description: str

    @classmethod
    def of(cls, name: str) -> PermissionResponse:
        return cls(name=name, description=PERMISSION_DESCRIPTIONS[name])


class RoleResponse(BaseModel):
    id: str = Field(description="The role's UUID: v12's own for the roles v12 has.")
    name: str
    display_name: str
    description: str
    system: bool = Field(True, description="Always: authgate's roles are built in.")

    @classmethod
    def of(cls, role: Role) -> RoleResponse:
        return cls(
            id=str(role.id),
            name=role.name,
            display_name=role.display_name,
            description=role.description,
        )


class RoleDetailResponse(RoleResponse):
    permissions: list[PermissionResponse]

    @classmethod
    def of(cls, role: Role) -> RoleDetailResponse:
        return cls(
            **RoleResponse.of(role).model_dump(),
            permissions=[PermissionResponse.of(name) for name in sorted(role.permissions)],
        )


def user_list_item(user: UserView) -> UserListItem:
    return UserListItem(**_user_fields(user), roles=_role_digests(user))


def user_detail(user: UserView) -> UserDetailResponse:
    return UserDetailResponse(
        **_user_fields(user),
        roles=_role_digests(user),
        created_at=user.created_at,
        updated_at=user.updated_at,
    )


def _user_fields(user: UserView) -> dict[str, Any]:
    """v12's ``UserResponse`` fields: ``pending`` until an invited user sets a password."""
    active = "active" if user.activated else "inactive"
    return {
        "id": user.public_id,
        "email": user.email,
        "name": " ".join(part for part in (user.first_name, user.last_name) if part),
        "status": "pending" if user.activation_pending else active,
        "lang_key": user.lang_key,
        "image_url": user.image_url,
        "tfa_enabled": user.second_factor is not None,
    }


def _role_digests(user: UserView) -> list[RoleDigest]:
    return [
        RoleDigest(name=role.name, display_name=role.display_name)
        for role in BUILT_IN_ROLES
        if role.name in user.authorities
    ]


def reactivates(body: Mapping[str, Any]) -> bool:
    """Whether a ``PUT /users/{id}`` body could (re)activate the user: a ``status`` other
    than "inactive" (anything unexpected counts; validation refuses it anyway). A new
    e-mail address is checked by the endpoint, which alone knows the current one."""
    status = body.get("status")
    return status is not None and status != "inactive"


def grants_privileged_role(body: Mapping[str, Any]) -> bool:
    """Whether a roles body could hand out permissions (anything unexpected counts)."""
    return could_grant_permissions(body.get("role_names"))


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
        data=[user_list_item(user) for user in listed.items],
        # v12's users list counts one page even when empty (usecase/user.go List).
        page_info=PageInfo.of(
            page=page, page_size=page_size, total_items=listed.total, min_pages=1
        ),
    )


@router.post(
    "/users",
    summary="Create a user (without a password: pending, invited by e-mail, link valid 7 days)",
    status_code=201,
    responses=documented_v12(400, 401, 403, 409, 413),
)
@requires_permission(USERS_WRITE)
@sets_credentials("creates a user with a password or an invitation")
async def create_user(
    body: CreateUserRequest, request: Request, response: Response
) -> UserDetailResponse:
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
        user, issued = await services.users.invite_user(new, valid_for=INVITATION_TTL)
        # Without a mail server the user stays pending, as in v12 (whose failed mail is
        # only logged): nobody ever sees this key; an admin issues a link instead.
        await services.password_resets.deliver(user, issued, invitation=True)
    response.headers["Location"] = f"{PREFIX}/users/{user.public_id}"
    return user_detail(user)


@router.get("/users/{user_id}", summary="One user", responses=documented_v12(400, 401, 403, 404))
@requires_permission(USERS_READ)
async def get_user(user_id: UuidPath, request: Request) -> UserDetailResponse:
    users = services_of(request).users
    return user_detail(await users.get_user_by_public_id(user_id_of(user_id)))


@router.put(
    "/users/{user_id}",
    summary="Change a user's e-mail, name, language or status (active, inactive)",
    responses=documented_v12(400, 401, 403, 404, 409, 413),
)
@requires_permission(USERS_WRITE)
@sets_credentials("reactivates a user or sets a new e-mail", when=reactivates)
async def update_user(
    user_id: UuidPath, body: UpdateUserRequest, request: Request
) -> UserDetailResponse:
    users = services_of(request).users
    target = await users.get_user_by_public_id(user_id_of(user_id))
    first, last = _split_name(body.name) if body.name is not None else (None, None)
    changes = UserChanges(
        email=body.email,
        first_name=first,
        last_name=last,
        lang_key=body.lang_key,
        activated=None if body.status is None else body.status == "active",
    )
    if changes.replaces_email(target.email):
        # Reset links and e-mailed codes go to the new address: a credential.
        require_password_session_for_target(request)
    # "inactive" never the caller, as DELETE; both end the user's tokens and keys.
    updated = await users.update_user(
        target.login, changes, acting_user_id=principal_of(request).user_id
    )
    return user_detail(updated)


@router.delete(
    "/users/{user_id}",
    summary="Deactivate a user (never the caller); their tokens and keys stop working",
    status_code=204,
    response_class=Response,
    responses=documented_v12(400, 401, 403, 404, 409),
)
@requires_permission(USERS_DELETE)
async def deactivate_user(user_id: UuidPath, request: Request) -> Response:
    users = services_of(request).users
    target = await users.get_user_by_public_id(user_id_of(user_id))
    await users.deactivate(target.login, acting_user_id=principal_of(request).user_id)
    return Response(status_code=204)


@router.put(
    "/users/{user_id}/roles",
    summary="Replace a user's roles (needs roles.write; no permission beyond the caller's)",
    status_code=204,
    response_class=Response,
    responses=documented_v12(400, 401, 403, 404, 409, 413),
)
@requires_permission(USERS_WRITE)
@sets_credentials("grants a role with permissions", when=grants_privileged_role)
async def set_roles(user_id: UuidPath, body: UpdateRolesRequest, request: Request) -> Response:
    principal = principal_of(request)
    require_permission(principal, ROLES_WRITE)
    users = services_of(request).users
    target = await users.get_user_by_public_id(user_id_of(user_id))
    wanted = _known_roles(body.role_names)
    check_role_change(principal, target.authorities, wanted)
    if target.id == principal.user_id and ROLE_ADMIN in target.authorities - wanted:
        # Nobody locks themselves out of the admin API by mistake; another admin may.
        raise Conflict("You cannot remove your own admin role", reason=Reason.SELF_DEMOTE)
    await users.update_user(
        target.login, UserChanges(authorities=wanted), acting_user_id=principal.user_id
    )
    return Response(status_code=204)


@router.get("/roles", summary="The roles", responses=documented_v12(401, 403))
@requires_permission(ROLES_READ)
async def list_roles() -> list[RoleResponse]:
    return [RoleResponse.of(role) for role in BUILT_IN_ROLES]


@router.get("/roles/permissions", summary="Every permission", responses=documented_v12(401, 403))
@requires_permission(ROLES_READ)
async def list_permissions() -> list[PermissionResponse]:
    return [PermissionResponse.of(name) for name in sorted(PERMISSION_DESCRIPTIONS)]


@router.get(
    "/roles/{role_id:v12_role_id}",
    summary="One role and its permissions, by id (or name)",
    responses=documented_v12(400, 401, 403, 404),
)
@requires_permission(ROLES_READ)
async def get_role(role_id: UuidPath) -> RoleDetailResponse:
    return RoleDetailResponse.of(_role(role_id))


@router.post(
    "/roles",
    summary="Refused: authgate has only its built-in roles",
    responses=documented_v12(401, 403),
)
@requires_permission(ROLES_WRITE)
async def create_role() -> Response:
    raise PermissionDenied(_NO_CUSTOM_ROLES, reason=Reason.ROLE_IMMUTABLE)


@router.put(
    "/roles/{role_id:v12_role_id}",
    summary="Refused: the built-in roles cannot be changed",
    responses=documented_v12(400, 401, 403, 404),
)
@requires_permission(ROLES_WRITE)
async def update_role(role_id: UuidPath) -> Response:
    _role(role_id)
    raise PermissionDenied(_SYSTEM_ROLE, reason=Reason.ROLE_IMMUTABLE)


@router.delete(
    "/roles/{role_id:v12_role_id}",
    summary="Refused: the built-in roles cannot be deleted",
    responses=documented_v12(400, 401, 403, 404),
)
@requires_permission(ROLES_WRITE)
async def delete_role(role_id: UuidPath) -> Response:
    _role(role_id)
    raise PermissionDenied(_SYSTEM_ROLE, reason=Reason.ROLE_IMMUTABLE)


# v12's words for a change to a system role (domain/errors.go ErrRoleImmutable); every
# authgate role is one.
_SYSTEM_ROLE = "system roles cannot be modified"
_NO_CUSTOM_ROLES = "custom roles are not supported: system roles cannot be modified"


def _role(role_id: str) -> Role:
    """The role ``role_id`` names: v12's UUID, or (authgate's older form) its name."""
    by_name = ROLES_BY_NAME.get(role_id)
    if by_name is not None:
        return by_name
    role = ROLES_BY_ID.get(parse_uuid(role_id, message="invalid role id"))
    if role is None:
        raise NotFound("role not found", reason=Reason.ROLE_NOT_FOUND)
    return role


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
