"""Signing in and out of the Settings UI, and the account page."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.datastructures import FormData

from authgate.api.access import (
    client_address,
    require_password_session_for_target,
    services_of,
    sets_credentials,
)
from authgate.api.routing import AuthgateRoute
from authgate.exceptions import (
    BadCredentials,
    NotFound,
    SessionRequired,
    Throttled,
    ValidationFailed,
)
from authgate.services.audit.events import Actor
from authgate.services.sign_in import SignInResult
from authgate.web.pages import (
    HOME_PATH,
    HTTPS_REQUIRED,
    LOGIN_PATH,
    PageRoute,
    cookies_of,
    current_principal,
    error_page,
    https_required,
    read_form,
    redirect_with_notice,
    refused,
    render,
    retry_message,
    safe_next,
)
from authgate.web.session import CSRF_FIELD, UiCookies, csrf_matches, new_login_csrf

SECOND_STEP_PATH = "/settings/login/code"

public_router = APIRouter(include_in_schema=False, route_class=AuthgateRoute)
router = APIRouter(prefix="/settings", route_class=PageRoute)


def login_page(
    request: Request,
    *,
    error: str | None = None,
    status: int = 200,
    form: FormData | None = None,
) -> Response:
    """The sign-in page; after a refused attempt (``form``: what was posted) it keeps
    the username typed and the page to go to after (the Settings UI review: both were
    lost, and the right password then led to the API keys page)."""
    token = new_login_csrf()
    if form is not None:
        next_page = safe_next(str(form.get("next") or ""))
        username = str(form.get("username", ""))[:254]
    else:
        next_page, username = safe_next(request.query_params.get("next")), ""
    response = render(
        request,
        "login.html",
        {
            "login_csrf": token,
            "error": error,
            # Said before anyone types a password that cannot work over this connection.
            "https_required": HTTPS_REQUIRED if https_required(request) else None,
            "next": next_page,
            "username": username,
        },
        status=status,
    )
    cookies_of(request).set_login_csrf(response, token)
    return response


def login_csrf_matches(request: Request, form: FormData) -> bool:
    """Whether a form shown before the session (sign-in, its second step) carries the
    value of the login CSRF cookie (double submit); without the cookie, never."""
    expected = request.cookies.get(cookies_of(request).login_csrf)
    presented = form.get(CSRF_FIELD)
    return expected is not None and csrf_matches(
        expected, presented if isinstance(presented, str) else None
    )


@public_router.get("/settings")
@public_router.get("/settings/")
async def settings_home() -> RedirectResponse:
    return RedirectResponse(HOME_PATH, status_code=303)


@public_router.get(LOGIN_PATH)
async def login_form(request: Request) -> Response:
    return login_page(request)


@public_router.post(LOGIN_PATH)
async def login(request: Request) -> Response:
    """The same login as /api/authenticate: same lockout rules, same audit events."""
    form = await read_form(request)
    if isinstance(form, HTMLResponse):
        return form
    cookies = cookies_of(request)
    if not login_csrf_matches(request, form):
        if cookies.login_csrf not in request.cookies and https_required(request):
            # The browser dropped the Secure cookie: no reload would ever help.
            return error_page(request, 403, "HTTPS is required", HTTPS_REQUIRED)
        return error_page(
            request, 403, "Form refused", "The sign-in form expired. Reload the page and try again."
        )
    username = str(form.get("username", ""))[:254]
    password = str(form.get("password", ""))[:1024]
    services = services_of(request)
    if not username or not password:
        message = "Enter your username and password."
        return login_page(request, error=message, status=400, form=form)
    try:
        user = await services.accounts.authenticate(username, password)
    except Throttled as refusal:  # a blocked address 423, a throttled pair 429, as in REST
        message = retry_message(refusal)
        return refused(login_page(request, error=message, form=form), refusal)
    except BadCredentials:
        return login_page(request, error="Wrong username or password.", status=401, form=form)
    result = await services.sign_in.after_password(
        user,
        remember_me=form.get("remember") == "on",
        client_ip=client_address(request.scope, services),
        bypass_requested=False,  # a browser never needs UTMStack's bypass header
    )
    next_page = safe_next(str(form.get("next") or ""))
    if not result.authenticated:
        # The second step: the pre-verification token waits in its own cookie, and the
        # login CSRF cookie stays for the code form.
        response = RedirectResponse(f"{SECOND_STEP_PATH}?next={quote(next_page)}", 303)
        cookies.set_pending(response, result.token, lifetime=result.expires_at - result.issued_at)
        return response
    response = RedirectResponse(next_page, status_code=303)
    start_session(response, cookies, result)
    return response


def start_session(response: Response, cookies: UiCookies, result: SignInResult) -> None:
    """Put an access token in the session cookie and drop the sign-in cookies."""
    cookies.set_session(response, result.token, lifetime=result.expires_at - result.issued_at)
    cookies.clear_login_csrf(response)
    cookies.clear_pending(response)


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Revokes the session's token (not just the cookie)."""
    await services_of(request).tokens.logout(current_principal(request))
    response = redirect_with_notice(request, LOGIN_PATH, "You are signed out.")
    cookies_of(request).clear_session(response)
    return response


@router.get("/account")
async def account_page(request: Request) -> Response:
    return render(request, "account.html", await account_context(request))


async def account_context(request: Request) -> dict[str, object]:
    """The account, its second factor and its v12 sessions, for the account page."""
    services = services_of(request)
    principal = current_principal(request)
    account = await services.accounts.account(principal.user_id)
    state = await services.second_factor.state(account)
    return {
        "account": account,
        "tfa": state,
        # Which recovery codes the "New recovery codes" form replaces (``tfa_pages``).
        "recovery_stamp": recovery_stamp(state.recovery_codes_made_at),
        "tfa_session_ok": principal.is_password_session,
        "sessions": await services.sessions.list_live(principal.user_id),
        # The page's own sign-in is a v12 session only when it carries a ``sid``.
        "current_session": principal.session_id,
    }


def recovery_stamp(made_at: datetime | None) -> str:
    """The recovery codes a form was shown with, by when they were made."""
    return made_at.isoformat() if made_at is not None else "none"


@router.post("/account/password")
@sets_credentials("changes the caller's password")
async def change_password(request: Request) -> Response:
    form = await request.form()
    services = services_of(request)
    principal = current_principal(request)
    new_password = str(form.get("new_password", ""))
    if new_password != str(form.get("confirm_password", "")):
        return await _account_with_error(request, {"confirm_password": "The passwords differ."})
    try:
        await services.accounts.change_password(
            principal.user_id,
            current_password=str(form.get("current_password", "")),
            new_password=new_password,
            keep_token_id=principal.credential_id,
        )
    except Throttled as refusal:  # counted like a login: too many wrong current passwords
        message = retry_message(refusal)
        return refused(await _account_with_error(request, {"current_password": message}), refusal)
    except ValidationFailed as error:
        fields = {"currentPassword": "current_password", "newPassword": "new_password"}
        return await _account_with_error(
            request, {fields.get(e.field, e.field): e.message for e in error.field_errors}
        )
    # Every other session of the user ended with the change; this one goes on.
    return redirect_with_notice(
        request, "/settings/account", "Password changed. Your other sessions have ended."
    )


@router.post("/account/sessions/{session_id}/revoke")
async def revoke_session(session_id: str, request: Request) -> Response:
    principal = current_principal(request)
    # As DELETE /api/v1/auth/sessions/{id}: ending another session needs a session that
    # passed the second factor (one from before it was enabled must not sign out those
    # that did, again and again). Refused (and recorded) as the API refuses it, in the
    # words of the page's other such forms.
    if session_id != principal.session_id:
        try:
            require_password_session_for_target(request)
        except SessionRequired:
            return error_page(
                request,
                403,
                "Not allowed",
                "Sign out and in again with your second factor to do this.",
            )
    try:
        await services_of(request).sessions.revoke(
            principal.user_id, session_id, actor=Actor.of(principal)
        )
    except NotFound:  # revoked meanwhile (another tab), expired, or not the caller's
        return redirect_with_notice(request, "/settings/account", "That session had already ended.")
    return redirect_with_notice(request, "/settings/account", "Session revoked.")


@router.post("/account/sessions/revoke-others")
@sets_credentials("ends the caller's other sessions")
async def revoke_other_sessions(request: Request) -> Response:
    principal = current_principal(request)
    revoked = await services_of(request).sessions.revoke_others(
        principal.user_id, keep=principal.session_id, actor=Actor.of(principal)
    )
    notice = f"{revoked} session{'' if revoked == 1 else 's'} revoked."
    return redirect_with_notice(request, "/settings/account", notice)


@router.post("/account/logout-all")
@sets_credentials("ends every session of the caller (and perhaps revokes their API keys)")
async def logout_everywhere(request: Request) -> Response:
    form = await request.form()
    revoke_keys = form.get("revoke_api_keys") == "on"
    await services_of(request).accounts.log_out_everywhere(
        current_principal(request).user_id, revoke_api_keys=revoke_keys
    )
    notice = "You are signed out everywhere" + (
        " and your API keys are revoked." if revoke_keys else "."
    )
    response = redirect_with_notice(request, LOGIN_PATH, notice)
    cookies_of(request).clear_session(response)
    return response


async def _account_with_error(
    request: Request, errors: dict[str, str], *, status: int = 400
) -> Response:
    context = await account_context(request)
    return render(request, "account.html", {**context, "errors": errors}, status=status)
