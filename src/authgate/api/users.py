"""User administration, at JHipster's ``/api/users`` paths: reading needs ``users.read``,
changing ``users.write``, deleting ``users.delete``, and giving or taking roles that
grant permissions ``roles.write`` (``security/permissions.py``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import Field

from authgate.api.access import (
    AdminRoute,
    check_role_change,
    principal_of,
    require_password_session_for_target,
    requires_permission,
    services_of,
    sets_credentials,
)
from authgate.api.errors import documented
from authgate.api.pagination import PageRequestDep, paged
from authgate.api.schemas import LenientBody, NotABoolean, StrictBody, UserDTO
from authgate.exceptions import Conflict, FieldError, ValidationFailed
from authgate.reasons import Reason
from authgate.security.permissions import (
    ROLES_READ,
    USERS_DELETE,
    USERS_READ,
    USERS_WRITE,
    could_grant_permissions,
)
from authgate.security.principal import KNOWN_AUTHORITIES, ROLE_USER
from authgate.services.text_rules import NO_CONTROL_CHARACTERS_PATTERN
from authgate.services.user_fields import (
    EMAIL_MAX_LENGTH,
    EMAIL_PATTERN,
    IMAGE_URL_MAX_LENGTH,
    LANG_KEY_PATTERN,
    LOGIN_MAX_LENGTH,
    LOGIN_PATTERN,
    NAME_MAX_LENGTH,
    RESERVED_LOGINS,
    NewUser,
    UserChanges,
    UserView,
)

router = APIRouter(prefix="/api/users", tags=["users"], route_class=AdminRoute)

# No user may be called "authorities" (GET /api/users/authorities lists the roles) or
# like one of UTMStack's built-in accounts: said in the document, so that a generated
# login never means the list. (A user created so before they were reserved is still
# served, and can be renamed.)
NOT_RESERVED: Final = {"not": {"enum": sorted(RESERVED_LOGINS)}}
LoginPath = Annotated[
    str, Path(min_length=1, max_length=LOGIN_MAX_LENGTH, json_schema_extra=NOT_RESERVED)
]
Email = Annotated[str, Field(min_length=3, max_length=EMAIL_MAX_LENGTH, pattern=EMAIL_PATTERN)]
Name = Annotated[
    str,
    Field(
        max_length=NAME_MAX_LENGTH,
        json_schema_extra={"pattern": NO_CONTROL_CHARACTERS_PATTERN},  # the service checks
    ),
]
LangKey = Annotated[str, Field(min_length=2, max_length=10, pattern=LANG_KEY_PATTERN)]
Role = Literal["ROLE_ADMIN", "ROLE_ANALYST", "ROLE_VIEWER", "ROLE_USER"]
Authorities = Annotated[list[Role], Field(min_length=1, max_length=4)]
Password = Annotated[str, Field(min_length=1, max_length=1024)]


ImageUrl = Annotated[
    str,
    Field(
        max_length=IMAGE_URL_MAX_LENGTH,
        json_schema_extra={"pattern": NO_CONTROL_CHARACTERS_PATTERN},  # the service checks
    ),
]
UserId = Annotated[int, NotABoolean, Field(ge=1, le=2**63 - 1)]
BodyLogin = Annotated[str, Field(min_length=1, max_length=LOGIN_MAX_LENGTH)]


class UserCreate(LenientBody):
    """UTMStack's ``ManagedUserVM``. Without ``password`` (UTMStack's UI never sends one)
    the user is created inactive, without a usable password, with a reset link (mailed,
    or returned once as ``resetLink``). Other fields (``id``, ``createdBy``, ...) are
    ignored."""

    login: Annotated[
        str,
        Field(
            min_length=1,
            max_length=LOGIN_MAX_LENGTH,
            pattern=LOGIN_PATTERN,
            json_schema_extra=NOT_RESERVED,
        ),
    ]
    email: Email
    password: Password | None = None
    firstName: Name | None = None
    lastName: Name | None = None
    langKey: LangKey | None = None
    imageUrl: ImageUrl | None = None
    authorities: Authorities | None = None
    activated: bool | None = None


class LocalUserCreate(UserCreate):
    """The body of UTMStack's ``POST /api/users/local`` (its user dialog's "Local creation
    (no email activation)"): a ``ManagedUserVM`` whose password is required. The user is
    active at once, whatever ``activated`` says (the dialog sends its blank user's
    ``false``)."""

    password: Password


class UserUpdate(LenientBody):
    """Fields to change; omitted (or null) fields keep their value, an empty name clears
    it. ``id`` and ``login`` may be sent back (a whole UserDTO). Where the ``id`` selects
    the user (``PUT /api/users``), a different ``login`` renames them, as UTMStack's user
    dialog does; elsewhere both must name the user being changed. Every other field
    (``password``, ``createdBy``, dates) is ignored."""

    id: UserId | None = None
    login: BodyLogin | None = None
    email: Email | None = None
    firstName: Name | None = None
    lastName: Name | None = None
    langKey: LangKey | None = None
    imageUrl: ImageUrl | None = None
    authorities: Authorities | None = None
    activated: bool | None = None

    def changes(self, *, with_login: bool) -> UserChanges:
        """The changes this body asks for; its ``login`` is one of them (a new name)
        only ``with_login`` (the ``id`` selected the user), else it only selected."""

        # A whole DTO sends null for a cleared name: null is "clear" when sent explicitly.
        def text(name: str, value: str | None) -> str | None:
            return "" if value is None and name in self.model_fields_set else value

        return UserChanges(
            login=self.login if with_login else None,
            email=self.email,
            first_name=text("firstName", self.firstName),
            last_name=text("lastName", self.lastName),
            lang_key=self.langKey,
            image_url=text("imageUrl", self.imageUrl),
            activated=self.activated,
            authorities=frozenset(self.authorities) if self.authorities is not None else None,
        )


class CreatedUserDTO(UserDTO):
    """The created user; for a user created without a password and without SMTP, the
    reset link to hand over, shown this once."""

    resetLink: str | None = Field(
        default=None,
        description="Only when no e-mail could be sent: the single-use link (24 h) that "
        "lets the new user choose a password. Shown once.",
    )
    resetLinkMailed: bool | None = Field(
        default=None, description="For a user created without a password: link e-mailed."
    )


class PasswordReset(StrictBody):
    newPassword: Password
    revokeApiKeys: bool = Field(
        default=False, description="Also revoke every API key of the user (at once, everywhere)."
    )


def grants_rights(body: Mapping[str, Any]) -> bool:
    """Whether a ``PUT /api/users/{login}`` body could hand out access: a role that
    grants permissions among the authorities, or a (re)activation. Deactivating, taking
    roles away and profile fields do not, so an admin-scoped key can still lock an
    account in an emergency. Anything unexpected counts as granting (validation refuses
    it anyway; never guess in the caller's favour). A new e-mail address or a new login
    also sets a credential, but only the user's record tells them from the ones a whole
    DTO sends back: the endpoint checks those (``require_password_session_for_target``)."""
    authorities = body.get("authorities")
    if authorities is not None and could_grant_permissions(authorities):
        return True
    activated = body.get("activated")
    return activated is not None and activated is not False


LoginFragment = Annotated[str, Path(pattern=LOGIN_PATTERN, description="Part of a login.")]
LoginFilter = Annotated[
    str | None,
    Query(max_length=LOGIN_MAX_LENGTH, description="Only users whose login contains this."),
]


@router.get(
    "",
    summary="List users (paged; ?login= filters by a part of the login)",
    response_model=list[UserDTO],
    responses=documented(400, 401, 403),
)
@requires_permission(USERS_READ)
async def list_users(
    request: Request, response: Response, paging: PageRequestDep, login: LoginFilter = None
) -> list[UserDTO]:
    page = await services_of(request).users.list_users(paging, login_contains=login)
    return paged(request, response, page, UserDTO.of)


# Literal paths before "/{login}": "authorities" would otherwise be taken for a login.
@router.get(
    "/authorities",
    summary="The authorities a user may hold",
    response_model=list[str],
    responses=documented(401, 403),
)
@requires_permission(ROLES_READ)
async def authorities() -> list[str]:
    return sorted(KNOWN_AUTHORITIES)


@router.get(
    "/filter/{login}",
    summary="Users whose login contains this text (case-insensitive; UTMStack's filter)",
    response_model=list[UserDTO],
    responses=documented(400, 401, 403),
)
@requires_permission(USERS_READ)
async def filter_users(
    login: LoginFragment, request: Request, response: Response, paging: PageRequestDep
) -> list[UserDTO]:
    # As UTMStack's getUsersByLogin: the caller is left out (its user picker lists others),
    # from the pages and their count alike.
    page = await services_of(request).users.list_users(
        paging, login_contains=login, except_user_id=principal_of(request).user_id
    )
    return paged(request, response, page, UserDTO.of)


@router.post(
    "",
    summary="Create a user (without a password: invited through a reset link)",
    status_code=201,
    response_model=CreatedUserDTO,
    response_model_exclude_none=False,
    responses=documented(400, 401, 403, 409, 413, 503),
)
@requires_permission(USERS_WRITE)
@sets_credentials("creates a user with a password or a reset link")
async def create_user(body: UserCreate, request: Request, response: Response) -> CreatedUserDTO:
    services = services_of(request)
    new = _new_user(request, body, activated=body.activated is not False)
    response.headers["Cache-Control"] = "no-store"
    if body.password is not None:
        user = await services.users.create_user(new)
        response.headers["Location"] = f"/api/users/{user.login}"
        return CreatedUserDTO(**UserDTO.of(user).model_dump())
    user, issued = await services.users.invite_user(new)
    response.headers["Location"] = f"/api/users/{user.login}"
    # UTMStack's sendCreationEmail: an invitation to the new account, not a reset asked for.
    mailed = await services.password_resets.deliver(user, issued, invitation=True)
    return CreatedUserDTO(
        **UserDTO.of(user).model_dump(),
        resetLinkMailed=mailed,
        resetLink=None if mailed else services.password_resets.link(issued),
    )


@router.post(
    "/local",
    summary="Create an active user with a password, no e-mail (UTMStack's local creation)",
    status_code=201,
    response_model=UserDTO,
    responses=documented(400, 401, 403, 409, 413, 503),
)
@requires_permission(USERS_WRITE)
@sets_credentials("creates a user with a password")
async def create_local_user(body: LocalUserCreate, request: Request, response: Response) -> UserDTO:
    user = await services_of(request).users.create_user(_new_user(request, body, activated=True))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Location"] = f"/api/users/{user.login}"
    return UserDTO.of(user)


def _new_user(request: Request, body: UserCreate, *, activated: bool) -> NewUser:
    """The user a creation body asks for, once the caller may give its roles."""
    roles = frozenset(body.authorities or (ROLE_USER,))
    check_role_change(principal_of(request), frozenset(), roles)
    return NewUser(
        login=body.login,
        email=body.email,
        password=body.password,
        authorities=roles,
        first_name=body.firstName,
        last_name=body.lastName,
        lang_key=body.langKey or "en",
        activated=activated,
        image_url=body.imageUrl,
    )


@router.put(
    "",
    summary="Update a user from a whole UserDTO (the id selects, and a new login renames; "
    "without an id, the login selects)",
    response_model=UserDTO,
    responses=documented(400, 401, 403, 404, 409, 413),
)
@requires_permission(USERS_WRITE)
@sets_credentials(
    "grants a privileged role, (re)activates a user, renames one or sets a new e-mail",
    when=grants_rights,
)
async def update_user_from_dto(body: UserUpdate, request: Request) -> UserDTO:
    users = services_of(request).users
    if body.id is not None:
        # UTMStack's user dialog keeps the login editable and sends the id along:
        # UserService.updateUser gives the user the DTO's login.
        target = await users.get_user_by_id(body.id)
    elif body.login is not None:
        target = await users.get_user(body.login)
    else:
        message = "The user's id or login is required."
        raise ValidationFailed(message, field_errors=[FieldError("id", message)])
    with _last_admin_is_400():
        return await _update(request, target, body, by_id=body.id is not None)


@router.get(
    "/{login}",
    summary="One user",
    response_model=UserDTO,
    responses=documented(400, 401, 403, 404),
)
@requires_permission(USERS_READ)
async def get_user(login: LoginPath, request: Request) -> UserDTO:
    return UserDTO.of(await services_of(request).users.get_user(login))


@router.put(
    "/{login}",
    summary="Update a user (profile, roles, activation)",
    response_model=UserDTO,
    responses=documented(400, 401, 403, 404, 409, 413),
)
@requires_permission(USERS_WRITE)
@sets_credentials(
    "grants a privileged role, (re)activates a user or sets a new e-mail", when=grants_rights
)
async def update_user(login: LoginPath, body: UserUpdate, request: Request) -> UserDTO:
    target = await services_of(request).users.get_user(login)
    return await _update(request, target, body, by_id=False)


async def _update(request: Request, target: UserView, body: UserUpdate, *, by_id: bool) -> UserDTO:
    _same_user(target, body, by_id=by_id)
    changes = body.changes(with_login=by_id)
    if changes.replaces_email(target.email) or changes.renames(target.login):
        # A whole DTO sends the e-mail and login back unchanged: only new ones count.
        require_password_session_for_target(request)
    if body.authorities is not None:
        check_role_change(principal_of(request), target.authorities, frozenset(body.authorities))
    user = await services_of(request).users.update_user(
        target.login, changes, acting_user_id=principal_of(request).user_id
    )
    return UserDTO.of(user)


def _same_user(target: UserView, body: UserUpdate, *, by_id: bool) -> None:
    """A body's ``id``/``login`` must name the user being changed: they select, never
    redirect (no mass assignment). Only where the ``id`` selected may the ``login``
    differ (a rename). On ``PUT /api/users/{login}`` the path names the user, so a
    different login in the body stays a mismatch: renaming there would make one
    request name the user twice, differently."""
    if body.id is not None and body.id != target.id:
        message = "The id in the body is not the id of this user."
        raise ValidationFailed(
            message, field_errors=[FieldError("id", message)], reason=Reason.ID_MISMATCH
        )
    if by_id:
        return
    if body.login is not None and body.login.strip().lower() != target.login:
        message = (
            "The login cannot be changed here; it must be the login of this user "
            "(PUT /api/users with the user's id renames)."
        )
        raise ValidationFailed(
            message, field_errors=[FieldError("login", message)], reason=Reason.LOGIN_MISMATCH
        )


@router.put(
    "/{login}/password",
    summary="Reset a user's password; all their tokens (and with revokeApiKeys, keys) revoked",
    status_code=204,
    response_class=Response,
    responses=documented(400, 401, 403, 404, 413, 503),
)
@sets_credentials("resets a user's password")
@requires_permission(USERS_WRITE)
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
@requires_permission(USERS_DELETE)
async def delete_user(login: LoginPath, request: Request) -> Response:
    with _last_admin_is_400():
        await services_of(request).users.delete_user(
            login, acting_user_id=principal_of(request).user_id
        )
    return Response(status_code=204)


@contextmanager
def _last_admin_is_400() -> Iterator[None]:
    """UTMStack answers a change that would leave no admin with a 400
    (BadRequestAlertException), and its user dialogs show the message only then; every
    other conflict stays a 409."""
    try:
        yield
    except Conflict as conflict:
        if conflict.reason is not Reason.LAST_ADMIN:
            raise
        raise ValidationFailed(conflict.message, reason=Reason.LAST_ADMIN) from None
