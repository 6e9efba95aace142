"""The second factor in the Settings UI: the sign-in step, enrolling, recovery codes,
turning it off, and the admin's reset.

The sign-in step reads the pre-verification token from its own cookie (set by the
password form, 5 minutes); its forms carry the login CSRF token (double submit), as the
password form does. QR codes are rendered here as inline SVG (segno): nothing is fetched
from elsewhere, and the secret is shown as text too.
"""

from __future__ import annotations

import segno
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from authgate.api.access import services_of, sets_credentials
from authgate.api.routing import AuthgateRoute
from authgate.exceptions import (
    AuthenticationFailed,
    Conflict,
    SecondFactorFailed,
    SecondFactorLocked,
    Throttled,
    TokenRevoked,
    ValidationFailed,
)
from authgate.reasons import Reason
from authgate.security.tokens import PendingClaims
from authgate.services.audit.events import Actor
from authgate.services.second_factor import Enrolment
from authgate.web.account_pages import (
    SECOND_STEP_PATH,
    account_context,
    login_csrf_matches,
    login_page,
    recovery_stamp,
    start_session,
)
from authgate.web.pages import (
    LOGIN_PATH,
    AdminPageRoute,
    PageRoute,
    cookies_of,
    current_principal,
    error_page,
    read_form,
    redirect,
    redirect_with_notice,
    refused,
    render,
    retry_message,
    safe_next,
)
from authgate.web.session import csrf_secret, session_csrf_token

public_router = APIRouter(include_in_schema=False, route_class=AuthgateRoute)
router = APIRouter(prefix="/settings", route_class=PageRoute)
admin_router = APIRouter(prefix="/settings", route_class=AdminPageRoute)


def qr_svg(uri: str) -> Markup:
    """The QR code of ``uri`` as inline SVG (segno's own output: no user markup)."""
    return Markup(segno.make(uri, error="m").svg_inline(scale=4, border=2))  # noqa: S704


# -- the sign-in step ----------------------------------------------------------------------


async def _pending(request: Request) -> PendingClaims | None:
    token = request.cookies.get(cookies_of(request).pending)
    if not token:
        return None
    try:
        return await services_of(request).tokens.authenticate_pre_verification(token)
    except AuthenticationFailed:
        return None


def _expired(request: Request) -> Response:
    response = redirect_with_notice(
        request, LOGIN_PATH, "The sign-in expired. Please sign in again."
    )
    cookies_of(request).clear_pending(response)
    return response


async def _step_page(
    request: Request,
    pending: PendingClaims,
    next_page: str,
    *,
    error: str | None = None,
    notice: str | None = None,
    enrolment: Enrolment | None = None,
    status: int = 200,
) -> Response:
    services = services_of(request)
    user = await services.accounts.account(pending.user_id)
    # What this login must prove: e-mailed codes too for a user without a factor, when
    # AUTHGATE_TFA_UNENROLLED=email (then the page offers no enrolment).
    method = await services.second_factor.login_method(user)
    return render(
        request,
        "login_code.html",
        {
            "login_csrf": request.cookies.get(cookies_of(request).login_csrf, ""),
            "next": next_page,
            "method": method,
            "error": error,
            "step_notice": notice,
            "enrolment": enrolment,
            "qr": qr_svg(enrolment.uri) if enrolment and enrolment.uri else None,
        },
        status=status,
    )


@public_router.get(SECOND_STEP_PATH)
async def second_step(request: Request) -> Response:
    pending = await _pending(request)
    if pending is None:
        return _expired(request)
    return await _step_page(request, pending, safe_next(request.query_params.get("next")))


@public_router.post(SECOND_STEP_PATH)
async def second_step_submit(request: Request) -> Response:
    """A code (TOTP, e-mail or recovery), "send a new code", or forced enrolment."""
    form = await read_form(request)
    if isinstance(form, HTMLResponse):
        return form
    cookies = cookies_of(request)
    if not login_csrf_matches(request, form):
        return error_page(request, 403, "Form refused", "The form expired. Sign in again.")
    pending = await _pending(request)
    if pending is None:
        return _expired(request)
    services = services_of(request)
    action = str(form.get("action", "verify"))
    code = str(form.get("code", "")).strip()[:32]
    next_page = safe_next(str(form.get("next") or ""))
    try:
        if action == "resend":
            user = await services.accounts.account(pending.user_id)
            await services.second_factor.resend(user)
            return await _step_page(request, pending, next_page, notice="A new code is on its way.")
        if action == "enrol":
            user = await services.sign_in.enrolling_user(pending)
            enrolment = await services.second_factor.start_enrolment(user, "TOTP")
            return await _step_page(request, pending, next_page, enrolment=enrolment)
        if action == "confirm":
            user = await services.sign_in.enrolling_user(pending)
            check = await services.second_factor.verify_enrolment(user, "TOTP", code)
            if not check.valid:
                # The same secret and QR code again, for another try.
                return await _step_page(
                    request,
                    pending,
                    next_page,
                    error=check.message,
                    enrolment=await services.second_factor.pending_enrolment(user),
                    status=400,
                )
            result, codes = await services.sign_in.after_enrolment(pending, "TOTP")
            page = render(request, "recovery_codes.html", {"codes": codes, "next": next_page})
            start_session(page, cookies, result)
            return page
        result = await services.sign_in.after_code(pending, code)
    except SecondFactorLocked as refusal:
        message = retry_message(refusal)
        locked = refused(login_page(request, error=message), refusal)
        cookies.clear_pending(locked)
        return locked
    except SecondFactorFailed:
        return await _step_page(
            request, pending, next_page, error="That code is not valid.", status=401
        )
    except TokenRevoked:  # another request (a second click) took or spent the sign-in
        return _expired(request)
    except Throttled as refusal:
        message = f"{refusal.message} ({refusal.retry_after} s)."
        return refused(await _step_page(request, pending, next_page, error=message), refusal)
    except Conflict as error:
        return await _step_page(request, pending, next_page, error=error.message, status=409)
    response = redirect(next_page)
    start_session(response, cookies, result)
    return response


# -- the account page ----------------------------------------------------------------------


@router.post("/account/tfa/start")
@sets_credentials("starts enrolling a second factor")
async def start_enrolment(request: Request) -> Response:
    services = services_of(request)
    user = await services.accounts.account(current_principal(request).user_id)
    enrolment = await services.second_factor.start_enrolment(user, "TOTP")
    return _setup_page(request, enrolment)


def _setup_page(
    request: Request, enrolment: Enrolment, *, error: str | None = None, status: int = 200
) -> Response:
    context = {"enrolment": enrolment, "qr": qr_svg(enrolment.uri or ""), "error": error}
    return render(request, "tfa_setup.html", context, status=status)


@router.post("/account/tfa/confirm")
@sets_credentials("enables a second factor")
async def confirm_enrolment(request: Request) -> Response:
    form = await request.form()
    services = services_of(request)
    principal = current_principal(request)
    # Read anew and dated from the read (the new session's token is issued on it): a
    # reset or "log out everywhere" committed since this request's session was checked
    # ends this request too; one committed while the code is checked ends the new
    # session (stamped at its issue, it outlived them: the diff review).
    user = await services.accounts.dated_account(principal.user_id)
    ended = user.tokens_valid_after
    if ended is not None and (principal.issued_at is None or principal.issued_at <= ended):
        raise TokenRevoked(reason=Reason.SESSIONS_REVOKED)
    check = await services.second_factor.verify_enrolment(
        user, "TOTP", str(form.get("code", "")).strip()[:32]
    )
    if not check.valid:
        enrolment = await services.second_factor.pending_enrolment(user)
        if enrolment is None:  # expired meanwhile: set up starts again from the account page
            context = await account_context(request)
            tfa_error = {"tfa_error": check.message}
            return render(request, "account.html", {**context, **tfa_error}, status=400)
        # The same secret and QR code again, for another try.
        return _setup_page(request, enrolment, error=check.message, status=400)
    codes = await services.second_factor.complete_enrolment(user, "TOTP", enable=True)
    # The code was just proved: this browser's session becomes a second-factor session
    # (the old token is revoked), so the user need not sign in again to manage it.
    issued = services.tokens.issue(user, remember_me=False, second_factor=True)
    await services.tokens.logout(principal)
    request.scope["authgate.csrf"] = session_csrf_token(
        csrf_secret(services.server_secret), issued.claims.token_id
    )
    page = render(request, "recovery_codes.html", {"codes": codes, "next": "/settings/account"})
    lifetime = issued.claims.expires_at - issued.claims.issued_at
    cookies_of(request).set_session(page, issued.token, lifetime=lifetime)
    return page


@router.post("/account/tfa/recovery-codes")
@sets_credentials("replaces the recovery codes")
async def new_recovery_codes(request: Request) -> Response:
    form = await request.form()
    services = services_of(request)
    user = await services.accounts.account(current_principal(request).user_id)
    # As a key's regenerate form: the form names the codes it replaces, so a reload of
    # the page that showed the new codes makes no third set (the Settings UI review).
    shown = form.get("codes")
    if isinstance(shown, str) and shown:
        state = await services.second_factor.state(user)
        if recovery_stamp(state.recovery_codes_made_at) != shown:
            context = await account_context(request)
            message = (
                "Your recovery codes were replaced after this page was shown (a reload "
                "sends the form again): nothing was changed. The new codes were shown once."
            )
            return render(request, "account.html", {**context, "tfa_error": message}, status=409)
    codes = await services.second_factor.regenerate_recovery_codes(user)
    return render(request, "recovery_codes.html", {"codes": codes, "next": "/settings/account"})


@router.post("/account/tfa/disable")
@sets_credentials("turns the second factor off")
async def disable(request: Request) -> Response:
    form = await request.form()
    services = services_of(request)
    principal = current_principal(request)
    try:
        user = await services.accounts.confirm_password(
            principal.user_id, str(form.get("password", ""))[:1024]
        )
        await services.second_factor.disable(user, code=str(form.get("code", "")).strip()[:32])
    except (ValidationFailed, SecondFactorFailed, Throttled) as error:
        context = await account_context(request)
        message = "Wrong password or code." if not isinstance(error, Throttled) else error.message
        return render(request, "account.html", {**context, "tfa_error": message}, status=400)
    return redirect_with_notice(request, "/settings/account", "Two-factor authentication is off.")


# -- admin -----------------------------------------------------------------------------------


@admin_router.post("/users/{login}/tfa/reset")
@sets_credentials("resets a user's second factor")
async def reset(login: str, request: Request) -> Response:
    services = services_of(request)
    user = await services.second_factor.reset(login, by=Actor.of(current_principal(request)))
    return redirect_with_notice(
        request, "/settings/users", f"Two-factor authentication of {user.login} was reset."
    )
