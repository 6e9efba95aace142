"""The Settings UI's password recovery (``/settings/reset``), linked from sign-in: ask
for a link by e-mail, then choose a new password with the link's key. The same service
as ``/api/account/reset-password/*``; forms carry the sign-in form's CSRF token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from authgate.api.access import services_of
from authgate.api.routing import AuthgateRoute
from authgate.exceptions import ValidationFailed
from authgate.http_config import RESET_PAGE_PATH
from authgate.web.pages import (
    LOGIN_PATH,
    cookies_of,
    error_page,
    read_form,
    redirect_with_notice,
    render,
)
from authgate.web.session import CSRF_FIELD, csrf_matches, new_login_csrf

router = APIRouter(include_in_schema=False, route_class=AuthgateRoute)

RESET_PATH = RESET_PAGE_PATH


def _reset_page(request: Request, *, status: int = 200, **context: Any) -> Response:
    token = new_login_csrf()
    services = services_of(request)
    response = render(
        request,
        "reset.html",
        {
            "login_csrf": token,
            "mail_configured": services.password_resets.mail_configured,
            "password_policy": services.settings.password_policy,
            **context,
        },
        status=status,
    )
    response.headers["Cache-Control"] = "no-store"
    cookies_of(request).set_login_csrf(response, token)
    return response


@router.get(RESET_PATH)
async def reset_form(request: Request) -> Response:
    key = request.query_params.get("key", "")[:128]
    if key:
        try:
            await services_of(request).password_resets.check(key)
        except ValidationFailed as dead:  # used, replaced or expired: say so at once
            return _reset_page(request, dead_link=dead.message, status=400)
    return _reset_page(request, key=key)


@router.post(RESET_PATH)
async def request_link(request: Request) -> Response:
    form = await _checked_form(request)
    if isinstance(form, Response):
        return form
    await services_of(request).password_resets.request(str(form.get("email", ""))[:254])
    return _reset_page(request, sent=True)


@router.post(RESET_PATH + "/finish")
async def finish(request: Request) -> Response:
    form = await _checked_form(request)
    if isinstance(form, Response):
        return form
    key = str(form.get("key", ""))[:128]
    new_password = str(form.get("new_password", ""))[:1024]
    if new_password != str(form.get("confirm_password", "")):
        return _reset_page(request, key=key, error="The passwords differ.", status=400)
    try:
        await services_of(request).password_resets.finish(key, new_password)
    except ValidationFailed as error:
        message = error.field_errors[0].message if error.field_errors else error.message
        if error.code.startswith("reset_key"):
            message = error.message
        return _reset_page(request, key=key, error=message, status=400)
    return redirect_with_notice(request, LOGIN_PATH, "Password set. Sign in with it.")


async def _checked_form(request: Request) -> dict[str, Any] | Response:
    form = await read_form(request)
    if isinstance(form, HTMLResponse):
        return form
    presented = form.get(CSRF_FIELD)
    expected = request.cookies.get(cookies_of(request).login_csrf)
    if expected is None or not csrf_matches(
        expected, presented if isinstance(presented, str) else None
    ):
        return error_page(
            request, 403, "Form refused", "The form expired. Reload the page and try again."
        )
    return dict(form)
