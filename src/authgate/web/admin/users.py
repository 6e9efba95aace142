"""The users page for administrators: create, invite, edit roles and activation, reset
a password or send a reset link, delete."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Final

from fastapi import APIRouter, Request, Response
from starlette.datastructures import QueryParams

from authgate.api.access import AdminRoute, services_of, sets_credentials
from authgate.exceptions import Conflict, NotFound, ValidationFailed
from authgate.reasons import Reason
from authgate.security.permissions import BUILT_IN_ROLES
from authgate.security.principal import ROLE_ADMIN, ROLE_ANALYST, ROLE_USER, ROLE_VIEWER
from authgate.services.reset_keys import INVITATION_TTL, IssuedResetKey
from authgate.services.user_fields import NewUser, UserChanges, UserView
from authgate.storage.paging import SortOrder
from authgate.web import forms
from authgate.web.forms import FormProblem
from authgate.web.pages import (
    LOGIN_PATH,
    AdminPageRoute,
    cookies_of,
    current_principal,
    redirect_with_notice,
    render,
)

router = APIRouter(prefix="/settings", route_class=AdminPageRoute)

USERS_PATH: Final = "/settings/users"
# The roles an admin may give, with their labels (the built-in roles, most rights first).
ROLES: Final = (
    (ROLE_ADMIN, "Administrator"),
    (ROLE_ANALYST, "Analyst"),
    (ROLE_VIEWER, "Viewer"),
    (ROLE_USER, "User"),
)
USER_PAGE_SIZES: Final = (25, 50, 100, 200)
# A form refused for its input answers what the REST users routes answer (JHipster's 400),
# read from their route class: one mapping for both.
INVALID_INPUT: Final = AdminRoute.validation_status


@router.get("/users")
async def users_page(request: Request) -> Response:
    return await _users(request)


@router.post("/users")
@sets_credentials("creates a user with a password")
async def create_user(request: Request) -> Response:
    form = await request.form()
    login, email, roles = (
        forms.text(form, "login", 100),
        forms.text(form, "email", 320),
        forms.strings(form, "roles"),
    )
    values = {"login": login, "email": email, "roles": roles}
    services = services_of(request)
    password = forms.secret(form, "password")
    new = NewUser(login=login, email=email, password=password or None, authorities=frozenset(roles))
    try:
        if not password:
            # As POST /api/v1/users invites: the same lifetime, the same mail.
            user, issued = await services.users.invite_user(new, valid_for=INVITATION_TTL)
            return await _hand_over(request, user, issued, created=True)
        created = await services.users.create_user(new)
    except ValidationFailed as error:
        problem = FormProblem(
            "create", "create", fields=_user_fields(error), values=values, status=INVALID_INPUT
        )
        return await _users(request, problem)
    except Conflict as error:
        where = "email" if error.reason is Reason.EMAIL_EXISTS else "login"
        problem = FormProblem(
            "create", "create", fields={where: error.message}, values=values, status=409
        )
        return await _users(request, problem)
    return redirect_with_notice(request, USERS_PATH, f"User {created.login} created.")


@router.post("/users/{login}/edit")
@sets_credentials("changes a user's roles and activation")
async def edit_user(request: Request, login: str) -> Response:
    form = await request.form()
    principal = current_principal(request)
    roles, activated = forms.strings(form, "roles"), form.get("activated") == "on"
    values = {"roles": roles, "activated": activated}
    target = _login(login)
    try:
        updated = await services_of(request).users.update_user(
            login,
            UserChanges(authorities=frozenset(roles), activated=activated),
            acting_user_id=principal.user_id,
        )
    except ValidationFailed as error:
        problem = FormProblem(
            "edit",
            "",
            target=target,
            fields=_user_fields(error),
            values=values,
            status=INVALID_INPUT,
        )
        return await _users(request, problem)
    except Conflict as error:
        problem = FormProblem(
            "edit", "", target=target, message=error.message, values=values, status=409
        )
        return await _users(request, problem)
    if updated.id == principal.user_id and ROLE_ADMIN not in updated.authorities:
        return redirect_with_notice(
            request, "/settings/account", "Saved. You are no longer an administrator."
        )
    return redirect_with_notice(request, USERS_PATH, f"Changes to {updated.login} saved.")


@router.post("/users/{login}/password")
@sets_credentials("resets a user's password")
async def reset_password(request: Request, login: str) -> Response:
    form = await request.form()
    services = services_of(request)
    target = _login(login)
    new_password = forms.secret(form, "new_password")
    if new_password != forms.secret(form, "confirm_password"):
        problem = FormProblem(
            "password",
            "",
            target=target,
            fields={"confirm_password": "The passwords differ."},
            status=INVALID_INPUT,
        )
        return await _users(request, problem)
    revoke_keys = form.get("revoke_api_keys") == "on"
    try:
        await services.users.set_password(login, new_password, revoke_api_keys=revoke_keys)
    except ValidationFailed as error:
        problem = FormProblem(
            "password", "", target=target, fields=_user_fields(error), status=INVALID_INPUT
        )
        return await _users(request, problem)
    if target == current_principal(request).login:
        # A reset ends every session of the user: this one too.
        response = redirect_with_notice(
            request, LOGIN_PATH, "Password changed. Sign in with the new one."
        )
        cookies_of(request).clear_session(response)
        return response
    ended = "Their sessions have ended" + (
        " and their API keys are revoked." if revoke_keys else "."
    )
    return redirect_with_notice(request, USERS_PATH, f"Password of {target} reset. {ended}")


@router.post("/users/{login}/reset-link")
@sets_credentials("issues a link that sets a user's password")
async def send_reset_link(request: Request, login: str) -> Response:
    user, issued = await services_of(request).users.new_reset_key(login)
    return await _hand_over(request, user, issued, created=False)


async def _hand_over(
    request: Request, user: UserView, issued: IssuedResetKey, *, created: bool
) -> Response:
    """Mail the reset link to the user, or, without SMTP, show it to the admin once."""
    resets = services_of(request).password_resets
    done = f"User {user.login} created. " if created else ""
    if await resets.deliver(user, issued, invitation=created):
        return redirect_with_notice(
            request, USERS_PATH, f"{done}A password link was e-mailed to {user.email}."
        )
    response = await _users(
        request,
        reset_link={
            "login": user.login,
            "url": resets.link(issued),
            "expires": issued.expires_at,
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/users/{login}/delete")
async def delete_user(request: Request, login: str) -> Response:
    target = _login(login)
    try:
        await services_of(request).users.delete_user(
            login, acting_user_id=current_principal(request).user_id
        )
    except Conflict as error:
        problem = FormProblem("delete", "", target=target, message=error.message, status=409)
        return await _users(request, problem)
    return redirect_with_notice(request, USERS_PATH, f"User {target} deleted.")


async def _users(
    request: Request,
    problem: FormProblem | None = None,
    *,
    reset_link: Mapping[str, object] | None = None,
) -> Response:
    services = services_of(request)
    params = request.query_params if problem is None else QueryParams("")
    number, size = forms.paging(params, USER_PAGE_SIZES, default=50)
    order = (SortOrder("login"),)
    page, number = await forms.page_in_range(services.users.list_users, number, size, order)
    users = list(page.items)
    # The user whose forms are open (refused, or asked for with ?edit=) is shown even
    # when not on this page, first.
    focus = problem.target if problem is not None else _login(params.get("edit", ""))
    if focus and focus not in {user.login for user in users}:
        with contextlib.suppress(NotFound):
            users.insert(0, await services.users.get_user(focus))
    if problem is not None and problem.target is not None:
        user_id = next((user.id for user in users if user.login == problem.target), 0)
        problem.form_id = f"user-{user_id}-{problem.form}"
    create_values: Mapping[str, Any] = {"login": "", "email": "", "roles": [ROLE_USER]}
    if problem is not None and problem.form == "create":
        create_values = problem.values
    return render(
        request,
        "users.html",
        {
            "users": users,
            "pager": forms.pager(USERS_PATH, params, page.total, number, size, USER_PAGE_SIZES),
            "roles": ROLES,
            "role_labels": dict(ROLES),
            "role_permissions": BUILT_IN_ROLES,
            "create": create_values,
            "problem": problem,
            "open": focus,
            "me": current_principal(request).login,
            "password_min": services.settings.password_policy.min_length,
            "password_max": services.settings.password_policy.max_length,
            "reset_link": reset_link,
        },
        status=problem.status if problem else 200,
    )


def _user_fields(error: ValidationFailed) -> dict[str, str]:
    names = {"authorities": "roles", "newPassword": "new_password"}
    fields: dict[str, str] = {}
    for problem in error.field_errors:
        name = names.get(problem.field, problem.field)
        fields[name] = f"{fields[name]} {problem.message}" if name in fields else problem.message
    return fields or {"form": error.message}


def _login(raw: str) -> str:
    """A login as the user service normalizes it."""
    return raw.strip().lower()


# -- audit trail ------------------------------------------------------------------------
