"""The Settings UI: server-rendered pages over the same services the REST API uses.

Every page works without JavaScript (plain forms that post and redirect); ``app.js``
only adds conveniences (allowed-IP editor with inline validation, expiry presets, copy
buttons, confirmations, sorting). Pages are never part of the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote, urlsplit

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from authgate import __version__
from authgate.api.access import (
    AdminConfigurationRoute,
    CredentialSetting,
    client_address,
    credential_setting_of,
    joined_header_values,
    principal_of,
    services_of,
    verdict_of,
)
from authgate.api.errors import status_of, validation_status
from authgate.api.routing import AuthgateRoute
from authgate.exceptions import (
    AuthgateError,
    NotFound,
    PermissionDenied,
    SessionRequired,
    Throttled,
    Unavailable,
    ValidationFailed,
)
from authgate.reasons import Reason
from authgate.security.clientip import forwarded_proto
from authgate.security.principal import ROLE_ADMIN, Principal
from authgate.services.gate import Credentials, Requirement
from authgate.web.display import breakable, device, iso, reason_text
from authgate.web.notices import NOTICE_MAX_AGE, notice_secret, open_notice, seal_notice
from authgate.web.session import (
    CSRF_FIELD,
    UiCookies,
    csrf_matches,
    csrf_secret,
    is_loopback_name,
    secure_cookies_dropped,
    session_csrf_token,
    ui_cookies,
)

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
TEMPLATES.env.filters.update(iso=iso, reason_text=reason_text, breakable=breakable, device=device)
LOGIN_PATH = "/settings/login"

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
ResponseT = TypeVar("ResponseT", bound=Response)
# More than the largest form of the UI has; a form is never a file upload.
MAX_FORM_FIELDS = 200
# The pages run only authgate's own files: no inline script or style, nothing from
# another origin, forms post only here, and no other site may frame them.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HTTPS_REQUIRED = (
    "Signing in needs HTTPS. This page was opened over plain HTTP, where browsers refuse "
    "the secure cookies a session needs, so no sign-in can work. Open it with https:// "
    "(or on this machine as http://localhost). Behind a proxy that terminates TLS, list "
    "it in AUTHGATE_TRUSTED_PROXIES so that its X-Forwarded-Proto is believed. A lab "
    "without TLS can allow plain HTTP with AUTHGATE_UI_INSECURE_HTTP=true."
)


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
) -> HTMLResponse:
    """A page, with what every template needs (caller, CSRF token, navigation), and the
    notice a redirect left for it (shown once)."""
    principal = verdict_of(request.scope).principal
    notice = _notice_for(request)
    base: dict[str, Any] = {
        "principal": principal,
        "is_admin": principal is not None and principal.is_admin,
        "csrf_field": CSRF_FIELD,
        "csrf_token": request.scope.get("authgate.csrf"),
        "version": __version__,
        "path": request.url.path,
        "notice": notice,
    }
    response = TEMPLATES.TemplateResponse(request, template, {**base, **(context or {})})
    response.status_code = status
    if notice is not None:
        cookies_of(request).clear_notice(response)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


def _notice_for(request: Request) -> str | None:
    sealed = request.cookies.get(cookies_of(request).notice)
    if not sealed:
        return None
    services = services_of(request)
    secret = notice_secret(services.server_secret)
    return open_notice(secret, sealed, path=request.url.path, now=services.clock())


def cookies_of(request: Request) -> UiCookies:
    """The session and login CSRF cookies as configured (``__Host-``, or the lab's)."""
    return ui_cookies(insecure_http=services_of(request).settings.ui_insecure_http)


def https_required(request: Request) -> bool:
    """Whether the browser reached this page over plain HTTP from a name that is not
    loopback, where it drops the UI's secure cookies (lab mode aside). Behind a trusted
    proxy its ``X-Forwarded-Proto`` (or ``Forwarded: proto=``) says how the browser came;
    from a peer on this machine that is not trusted (a local proxy, or a local browser)
    it cannot be told, and nothing is reported: better no warning than a wrong one."""
    services = services_of(request)
    if services.settings.ui_insecure_http:
        return False
    resolver = services.client_ips
    client = request.scope.get("client")
    peer = str(client[0]) if client else ""
    scheme: str | None = request.url.scheme
    if resolver.trusts(peer):
        name = b"forwarded" if resolver.header == "forwarded" else b"x-forwarded-proto"
        scheme = forwarded_proto(resolver.header, joined_header_values(request.scope, name))
    elif not peer or is_loopback_name(peer):
        return False
    return secure_cookies_dropped(scheme=scheme, hostname=request.url.hostname)


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return render(request, "error.html", {"title": title, "message": message}, status=status)


# The page's title for the statuses that have their own; any other says only this.
_FAILURE_TITLES = {403: "Not allowed", 404: "Not found"}


def failure_page(request: Request, error: AuthgateError) -> HTMLResponse:
    """The page for a refusal of a service: the status the REST API gives the same error
    (a conflict is 409 on both, a throttle 429 with its ``Retry-After``), the error's
    message in the friendly error page."""
    status = status_of(error)
    if isinstance(error, ValidationFailed):
        # Invalid input: as the matching REST routes answer it (the key pages 422, as
        # /api/api-keys; elsewhere JHipster's 400): the route class says which.
        status = validation_status(request)
    title = _FAILURE_TITLES.get(status, "That did not work")
    page = refused(error_page(request, status, title, error.message), error)
    page.status_code = status
    return page


def refused(response: ResponseT, error: AuthgateError) -> ResponseT:
    """``response`` (a page that says why) as the REST API answers ``error``: its status
    (one mapping, ``status_of``: a blocked address is 423, a throttle 429) and, when
    waiting helps, ``Retry-After``."""
    response.status_code = status_of(error)
    if isinstance(error, Throttled | Unavailable):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def retry_message(refusal: Throttled) -> str:
    """What a page says of a throttle: why, and when to try again."""
    return f"{refusal.message}. Try again in {refusal.retry_after} seconds."


async def read_form(request: Request) -> FormData | HTMLResponse:
    """The posted form, or the page that refuses it: 400 when it cannot be read
    (malformed multipart, a file part, too many fields), 413 when it is over the body
    limit (sent in chunks, so only reading it tells), never a 500. Later calls of
    ``request.form()`` return the same parsed form."""
    try:
        return await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    except HTTPException as refused:  # Starlette's 400, or the body limit's 413
        if refused.status_code == 413:
            return error_page(
                request, 413, "Form refused", "The form is larger than this server accepts."
            )
        return error_page(
            request,
            400,
            "Form refused",
            "The form could not be read. Reload the page and try again.",
        )


def redirect(url: str) -> RedirectResponse:
    """303 See Other: a form that was posted is followed by a GET."""
    return RedirectResponse(url, status_code=303)


def redirect_with_notice(request: Request, url: str, notice: str) -> RedirectResponse:
    """A redirect whose page shows ``notice`` once: in a signed cookie, never in the URL
    (web/notices.py)."""
    response = redirect(url)
    services = services_of(request)
    sealed = seal_notice(
        notice_secret(services.server_secret),
        notice,
        path=urlsplit(url).path,
        now=services.clock(),
    )
    cookies_of(request).set_notice(response, sealed, max_age=NOTICE_MAX_AGE)
    return response


# Where signing in leads when no (acceptable) page was asked for.
HOME_PATH = "/settings/api-keys"
# In a path, what some browser or server reads as another path than the one checked:
# ``//`` (another host, or an empty segment collapsed), ``\\`` (a slash to browsers), and
# the encoded dot, slash and backslash (decoded on the way, before or after the check).
_AMBIGUOUS_IN_PATH = ("//", "\\", "%2e", "%2f", "%5c")


def safe_next(target: str | None) -> str:
    """Only same-site paths under /settings (never an open redirect), spelled one way:
    no dot segments (``/settings/../api`` leaves /settings), nothing that decodes to
    one, no controls or white space (browsers drop tabs and newlines from URLs).
    Anything else leads to the default page."""
    if not target or any(char.isspace() or not char.isprintable() for char in target):
        return HOME_PATH
    parts = urlsplit(target)
    path = parts.path
    if (
        parts.scheme
        or parts.netloc
        or not path.startswith("/settings/")
        or any(ambiguous in path.lower() for ambiguous in _AMBIGUOUS_IN_PATH)
        or any(segment in (".", "..") for segment in path.split("/"))
    ):
        return HOME_PATH
    return target


def page_requirement(required: str | None, *, sets_credentials: bool) -> Requirement:
    """What the gate checks for a page, after the session: the page's authority, and for
    a form that sets credentials a password session that passed the second factor. The
    messages are the pages' own; the reasons those of the REST API's same refusals."""

    def requirement(principal: Principal, _method: str) -> None:
        if required is not None and not principal.has_authority(required):
            raise PermissionDenied(
                "This page is for administrators only.", reason=Reason.authority_required(required)
            )
        if sets_credentials and not principal.is_password_session:
            if principal.second_factor_missing:
                raise SessionRequired(
                    "Sign out and in again with your second factor to do this.",
                    reason=Reason.SECOND_FACTOR_REQUIRED,
                )
            raise SessionRequired(reason=Reason.SESSION_REQUIRED)

    return requirement


SESSION_ENDED = "Your session has ended. Please sign in again."


def sign_in_again(request: Request, *, session_ended: bool) -> RedirectResponse:
    """To the sign-in page, which leads back to the page asked for; for a form (whose URL
    answers POST only, a 404 after signing in) back to the page that holds it.

    A form comes from a signed-in page, so one posted without a session tells that the
    session ended meanwhile, as a refused token does: the cookie lives as long as its
    token, and the browser stops sending it when both expire."""
    form_posted = request.method not in ("GET", "HEAD")
    if form_posted:
        target = form_page(request)
    else:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    login = f"{LOGIN_PATH}?next={quote(target)}"
    if session_ended or form_posted:
        return redirect_with_notice(request, login, SESSION_ENDED)
    return redirect(login)


def form_page(request: Request) -> str:
    """The page a form posted to this URL is on: the nearest page at or above it
    (``/settings/api-keys/{id}/edit`` is on ``/settings/api-keys/{id}``,
    ``/settings/account/sessions/{id}/revoke`` on ``/settings/account``)."""
    segments = request.url.path.split("/")
    while len(segments) > 2:
        path = "/".join(segments)
        if any(
            isinstance(route, PageRoute)
            and "GET" in (route.methods or ())
            and route.path_regex.match(path)
            for route in request.app.router.routes
        ):
            return path
        segments.pop()
    return HOME_PATH


class PageRoute(AuthgateRoute):
    """A page for signed-in users: no session redirects to the login page; every POST
    must carry the session's CSRF token; errors become HTML pages, not JSON.

    The session cookie's token goes to the gate like a bearer token (services/gate.py),
    with the page's requirement: a refused token or page is recorded as the API records
    it (the middleware's ``Gate.record``), and the token's checks live in one place.

    A form marked with ``sets_credentials`` (api/access.py) is refused (403) to anything
    but a password session. The session cookie only ever holds a token from the password
    login, so today this never refuses anyone: it keeps the rule in force should another
    kind of credential ever reach the pages.
    """

    required_authority: ClassVar[str | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["include_in_schema"] = False
        super().__init__(*args, **kwargs)

    # As in AuthenticatedRoute: the mark the handler enforces, read when it is built.
    credential_setting: CredentialSetting | None = None

    def get_route_handler(self) -> Handler:
        handle = super().get_route_handler()
        required = self.required_authority
        self.credential_setting = credential_setting_of(self.endpoint)
        sets_credentials = self.credential_setting is not None

        requirement = page_requirement(required, sets_credentials=sets_credentials)

        async def page(request: Request) -> Response:
            services = services_of(request)
            cookies = cookies_of(request)
            token = request.cookies.get(cookies.session)
            if not token:
                # Not signed in (yet), or the cookie ended with its token: the way to the
                # login page, not a refused credential, so the gate is not asked and
                # nothing is audited.
                return sign_in_again(request, session_ended=False)
            scope = request.scope
            # Always a JWT: the cookie is set by the password login only, and whatever it
            # holds must never be taken for an API key.
            verdict = await services.gate.check(
                verdict_of(scope),
                Credentials("jwt", token),
                client_address(scope, services),
                request.method,
                requirement,
            )
            principal = verdict.principal
            if principal is None:  # the gate refused the token (recorded as any token)
                response = sign_in_again(request, session_ended=True)
                cookies.clear_session(response)
                return response
            expected = session_csrf_token(
                csrf_secret(services.server_secret), principal.credential_id
            )
            scope["authgate.csrf"] = expected
            if verdict.error is not None:  # the page's requirement (recorded by the gate)
                return error_page(request, 403, "Not allowed", verdict.error.message)
            if request.method == "POST":
                form = await read_form(request)
                if isinstance(form, HTMLResponse):
                    return form
                presented = form.get(CSRF_FIELD)
                if not csrf_matches(expected, presented if isinstance(presented, str) else None):
                    return error_page(
                        request,
                        403,
                        "Form refused",
                        "The form expired or was not sent from this site. "
                        "Reload the page and try again.",
                    )
            try:
                return await handle(request)
            except AuthgateError as error:
                return failure_page(request, error)

        return page


class AdminPageRoute(PageRoute):
    required_authority = ROLE_ADMIN


class AdminConfigurationPageRoute(AdminPageRoute):
    """Admin configuration pages (service credentials): invalid input is 422, as on
    their REST routes (``AdminConfigurationRoute``)."""

    validation_status = AdminConfigurationRoute.validation_status


def current_principal(request: Request) -> Principal:
    return principal_of(request)


# The largest id the database's BIGINT columns hold.
MAX_ID = 2**63 - 1


def stored_id(value: int, not_found: NotFound) -> int:
    """``value`` when it can name a row; ``not_found`` otherwise (an id beyond the
    database's integers must not reach a query, where it would fail as a server error)."""
    if not 1 <= value <= MAX_ID:
        raise not_found
    return value
