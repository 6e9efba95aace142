"""Real nginx splits UTMStack's routes between authgate and UTMStack.

nginx (Debian's package) runs ``examples/nginx/utmstack-beside.conf`` with only its
addresses, certificate and UTMStack's shared key changed; `authgate serve` and a stub
UTMStack (every request answered with ``utmstack:<path>``) listen on loopback ports. The
client connects from 127.0.0.2, so the address authgate records can only come from the
``X-Forwarded-For`` nginx writes. Skipped where nginx is not installed (CI installs it).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.certificates import write_certificates
from tests.processes import Process, free_port
from tests.proxies import EXAMPLES, Stack, needs_nginx, run_nginx, start_authgate

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow, needs_nginx]

EXAMPLE = EXAMPLES / "nginx" / "utmstack-beside.conf"
SHARED_KEY = "utmstack-shared-key-for-the-test"
CLIENT_ADDRESS = "127.0.0.2"


# -- the stub UTMStack -------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class UtmstackHandler(BaseHTTPRequestHandler):
    """Answers every request with ``utmstack:<path>`` and records what reached it."""

    protocol_version = "HTTP/1.1"
    seen: list[Seen]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.seen.append(
            Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
        )
        body = f"utmstack:{self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Utmstack:
    port: int
    seen: list[Seen]


@pytest.fixture(scope="module")
def utmstack() -> Iterator[Utmstack]:
    seen: list[Seen] = []
    handler = type("Handler", (UtmstackHandler,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Utmstack(server.server_address[1], seen)
    finally:
        server.shutdown()
        server.server_close()


# -- nginx with the example ---------------------------------------------------------------------


def rendered(*, authgate: int, utmstack: int, proxy: int, cert: Path, key: Path) -> str:
    """The example with the test's addresses, certificate and shared key; each value it
    replaces must be written exactly once, so an edit of the example cannot slip past."""
    text = EXAMPLE.read_text()
    replacements = {
        "server 127.0.0.1:8080;": f"server 127.0.0.1:{authgate};",
        "server 127.0.0.1:10001;": f"server 127.0.0.1:{utmstack};",
        "listen 443 ssl;": f"listen 127.0.0.1:{proxy} ssl;",
        "/utmstack/cert/utm.crt": str(cert),
        "/utmstack/cert/utm.key": str(key),
        "REPLACE-WITH-UTMSTACK-SHARED-KEY": SHARED_KEY,
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{old!r} in {EXAMPLE.name}"
        text = text.replace(old, new)
    return text


@dataclass
class Beside:
    stack: Stack
    utmstack: Utmstack
    client: httpx2.Client

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[str, httpx2.Response]:
        """Which side answered (``utmstack`` when the stub did, else ``authgate``), and
        the response; a request that reaches the stub is the only one it records."""
        before = len(self.utmstack.seen)
        response = self.client.request(method, path, **kwargs)
        reached = self.utmstack.seen[before:]
        if response.text.startswith("utmstack:"):
            assert [(s.method, s.path) for s in reached] == [(method, path)], reached
            return "utmstack", response
        assert reached == [], reached
        return "authgate", response


@pytest.fixture(scope="module")
def beside(tmp_path_factory: pytest.TempPathFactory, utmstack: Utmstack) -> Iterator[Beside]:
    workdir = tmp_path_factory.mktemp("nginx-utmstack-beside")
    authgate, admin_token, user_token = start_authgate(workdir / "authgate", {})
    nginx: Process | None = None
    try:
        port = free_port()
        _, cert, key = write_certificates(workdir)
        config = rendered(
            authgate=authgate.port, utmstack=utmstack.port, proxy=port, cert=cert, key=key
        )
        nginx = run_nginx(workdir / "nginx", config, port, name=EXAMPLE.name)
        # The test is about routing, not the certificate: it is not verified.
        transport = httpx2.HTTPTransport(verify=False, local_address=CLIENT_ADDRESS)
        with httpx2.Client(
            base_url=f"https://127.0.0.1:{port}", transport=transport, timeout=10.0
        ) as client:
            yield Beside(Stack(authgate, port, admin_token, user_token), utmstack, client)
    finally:
        if nginx is not None:
            nginx.stop()
        authgate.stop()


# -- which side answers -----------------------------------------------------------------------

UUID = "993a4d30-55f7-4fef-a6c2-a4fa91a8a628"

TO_AUTHGATE = [
    # UTMStack v10 / v11
    ("POST", "/api/authenticate"),
    ("GET", "/api/authenticate"),
    ("POST", "/api/authenticate/"),  # Spring would serve the trailing slash itself
    ("POST", "/api/logout"),
    ("GET", "/api/check-credentials"),
    ("POST", "/api/check-credentials"),
    ("GET", "/api/account"),
    ("POST", "/api/account/change-password"),
    ("POST", "/api/account/reset-password/init"),
    ("GET", "/api/account/tfa"),
    ("GET", "/api/users"),
    ("GET", "/api/users/authorities"),
    ("GET", "/api/users/admin"),
    ("GET", "/api/users/filter/adm"),
    ("GET", "/api/api-keys"),
    ("POST", "/api/api-keys/usage"),
    ("GET", f"/api/api-keys/{UUID}"),
    ("GET", "/api/tfa/verifyCode?code=123456"),
    ("POST", "/api/tfa/verify-code"),
    ("GET", "/api/tfa/refresh"),
    ("POST", "/api/tfa/init"),
    ("POST", "/api/enrollment/tfa"),
    # UTMStack v12
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/auth/me"),
    ("GET", "/api/v1/auth/authenticate"),
    ("POST", "/api/v1/auth/change-password"),
    ("GET", "/api/v1/auth/sessions"),
    ("DELETE", f"/api/v1/auth/sessions/{UUID}"),
    ("POST", "/api/v1/auth/tfa/verify-code"),
    ("POST", "/api/v1/auth/reset-password/init"),
    ("POST", "/api/v1/auth/reset-password/finish"),
    ("GET", "/api/v1/users"),
    ("PUT", f"/api/v1/users/{UUID}/roles"),
    ("GET", "/api/v1/roles"),
    ("GET", "/api/v1/roles/permissions"),
    ("GET", "/api/v1/api-keys"),
    ("POST", "/api/v1/api-keys/authenticate"),
    ("POST", "/api/v1/tfa/enroll"),
    ("GET", "/api/v1/idp-providers"),
    # authgate's own
    ("GET", "/settings"),
    ("GET", "/settings/"),
    ("GET", "/settings/login"),
    ("GET", "/.well-known/jwks.json"),
]

TO_UTMSTACK = [
    ("POST", "/api/authenticateFederationServiceManager"),  # agent-manager's, not a login
    ("GET", "/api/authority"),  # UTMStack's AuthorityResource
    ("GET", "/api/users-elsewhere"),  # whole segments only
    ("GET", "/api/accounts"),
    ("GET", "/api/api-keys-elsewhere"),
    ("GET", "/api/tfa-elsewhere"),
    ("GET", "/api/utm-alerts"),
    ("GET", "/api/ping"),
    ("GET", "/management/health"),
    ("GET", "/management/info"),
    ("GET", "/swagger-ui/index.html"),
    ("GET", "/v3/api-docs"),
    ("GET", "/api/audit-events"),  # authgate's administration API: at its own address
    ("GET", "/api/auth/verify"),
    ("GET", "/api/v1/health"),  # UTMStack's backend health, as /management/health
    ("GET", "/api/v1/auth/saml/login"),  # an /auth route authgate does not serve
    ("GET", "/api/v1/idp-providers/1"),
    ("GET", "/api/v1/alerts"),  # UTMStack's application under /api/v1
    ("GET", "/api/v1/users-elsewhere"),
    ("GET", "/settingsx"),
    ("GET", "/"),
    ("GET", "/dashboard/overview"),
]


@pytest.mark.parametrize(("method", "path"), TO_AUTHGATE)
def test_utmstacks_authentication_routes_reach_authgate(
    beside: Beside, method: str, path: str
) -> None:
    """Every route of authgate's UTMStack contract is answered by authgate (the stub
    never sees it), whatever authgate answers without credentials."""
    side, response = beside.call(method, path)
    assert side == "authgate", response.text
    assert "<center>nginx" not in response.text  # authgate's answer, not nginx's error page


@pytest.mark.parametrize(("method", "path"), TO_UTMSTACK)
def test_everything_else_reaches_utmstack(beside: Beside, method: str, path: str) -> None:
    """UTMStack's application, its health and docs, and paths that only share a prefix
    with authgate's reach UTMStack, as the client sent them."""
    side, response = beside.call(method, path)
    assert side == "utmstack", response.text
    assert response.text == f"utmstack:{path}"


@pytest.mark.parametrize(
    "path",
    [
        "/api/authenticate;jsessionid=1",
        "/api/check-credentials;x",
        "/api;x/users",
        "/;x/api/authenticate",
        "/x/..;/api/authenticate",
    ],
)
def test_path_parameters_under_api_are_refused(beside: Beside, path: str) -> None:
    """UTMStack's servlet container strips ";params" from each segment, so these would be
    its own login or password check: nginx refuses them itself (its own 400 page), and
    UTMStack never sees them."""
    before = len(beside.utmstack.seen)
    response = beside.client.post(path, json={"username": "alice", "password": "x" * 12})
    assert response.status_code == 400
    assert "<center>nginx" in response.text
    assert beside.utmstack.seen[before:] == []


# -- what each side is told -------------------------------------------------------------------


def recorded_login(stack: Stack, request_id: str) -> dict[str, Any]:
    """The AUTH_SUCCESS of one request, read through authgate's API (waits for the trail's
    batch to be written)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = httpx2.get(
            f"{stack.authgate.base_url}/api/audit-events",
            params={"type": "AUTH_SUCCESS", "actor": "alice", "size": 200},
            headers={"Authorization": f"Bearer {stack.admin_token}"},
        )
        assert response.status_code == 200, response.text
        for event in response.json():
            if event["correlationId"] == request_id:
                return dict(event)
        time.sleep(0.2)
    pytest.fail(f"no AUTH_SUCCESS with correlation id {request_id}")


def test_a_login_through_nginx_works_and_authgate_sees_the_clients_address(
    beside: Beside,
) -> None:
    """The login's AUTH_SUCCESS names the client's address (127.0.0.2), not nginx's
    (127.0.0.1) and not the X-Forwarded-For the client sent itself."""
    request_id = f"beside-{uuid.uuid4().hex[:12]}"
    side, response = beside.call(
        "POST",
        "/api/authenticate",
        json={"username": "alice", "password": "proxy-test-user-password"},
        headers={"X-Request-ID": request_id, "X-Forwarded-For": "203.0.113.9"},
    )
    assert side == "authgate"
    assert response.status_code == 200, response.text
    token = response.json()["id_token"]

    account = beside.call("GET", "/api/account", headers={"Authorization": f"Bearer {token}"})
    assert account[1].status_code == 200, account[1].text
    assert account[1].json()["login"] == "alice"
    me = beside.call("GET", "/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me[1].status_code == 200, me[1].text
    assert me[1].json()["email"] == "alice@example.com"

    login = recorded_login(beside.stack, request_id)
    assert (login["actor"], login["ipAddress"]) == ("alice", CLIENT_ADDRESS)


def test_an_api_key_allowed_only_the_clients_address_works_through_nginx(beside: Beside) -> None:
    """Utm-Api-Key and Authorization reach authgate, which checks the allow list against
    the client's address, not nginx's."""
    key = beside.stack.create_key("beside", allowedIp=[CLIENT_ADDRESS])
    for header in ({"Utm-Api-Key": key}, {"Authorization": f"Bearer {key}"}):
        side, response = beside.call("GET", "/api/account", headers=header)
        assert side == "authgate"
        assert response.status_code == 200, response.text
        assert response.json()["login"] == "admin"


def test_utmstack_gets_its_shared_key_the_host_and_the_clients_address(beside: Beside) -> None:
    """What UTMStack's own proxy sends its front end: the shared key, the client's Host,
    the client's address and the scheme."""
    side, _ = beside.call(
        "GET", "/api/utm-alerts?page=0", headers={"X-Forwarded-For": "203.0.113.9"}
    )
    assert side == "utmstack"
    headers = beside.utmstack.seen[-1].headers
    assert headers["x-shared-key"] == SHARED_KEY
    assert headers["host"] == "127.0.0.1"  # the client's, not the upstream's name
    assert headers["x-forwarded-for"].split(", ")[-1] == CLIENT_ADDRESS
    assert headers["x-real-ip"] == CLIENT_ADDRESS
    assert headers["x-forwarded-proto"] == "https"


# -- UTMStack's internal key (compliance-report PDFs, v10 and v11) -----------------------------


def test_a_reports_account_request_with_utmstacks_internal_key_reaches_utmstack(
    beside: Beside,
) -> None:
    """UTMStack replay: web-pdf opens the UI with ?key=<INTERNAL_KEY>; the UI sends it as
    Utm-Internal-Key (auth.interceptor.ts), and GET /api/account must reach UTMStack's
    backend, the only one that knows the key (authgate answered 401, the PDF came out
    empty). It gets UTMStack's shared key and the client's address, as location / does."""
    key = {"Utm-Internal-Key": "utmstack-internal-key"}
    side, _ = beside.call("GET", "/api/account", headers=key)
    assert side == "utmstack"
    before = len(beside.utmstack.seen)
    assert beside.client.head("/api/account", headers=key).status_code == 200
    assert [(s.method, s.path) for s in beside.utmstack.seen[before:]] == [("HEAD", "/api/account")]
    for seen in beside.utmstack.seen[-2:]:
        headers = seen.headers
        assert headers["utm-internal-key"] == "utmstack-internal-key"
        assert headers["x-shared-key"] == SHARED_KEY
        assert headers["x-real-ip"] == CLIENT_ADDRESS
        assert headers["x-forwarded-proto"] == "https"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/authenticate"),  # never UTMStack's own login past authgate
        ("GET", "/api/authenticate"),
        ("GET", "/api/check-credentials"),  # nor its unthrottled password check
        ("POST", "/api/account"),
        ("POST", "/api/account/reset-password/init"),
        ("POST", "/api/account/change-password"),
        ("GET", "/api/account/tfa"),
        ("GET", "/api/users"),
        ("GET", "/api/api-keys"),
        ("POST", "/api/v1/auth/login"),
        ("GET", "/api/v1/auth/me"),
    ],
)
def test_utmstacks_internal_key_takes_no_other_route_past_authgate(
    beside: Beside, method: str, path: str
) -> None:
    """Any client can send the header: only the account read of a report goes to UTMStack
    with it; authgate's other routes stay authgate's (nothing it protects is bypassed)."""
    side, response = beside.call(method, path, headers={"Utm-Internal-Key": "anything"})
    assert side == "authgate", response.text


def test_an_account_request_without_the_internal_key_is_authgates(beside: Beside) -> None:
    """No header, or an empty one: authgate's GET /api/account (401 without credentials),
    never UTMStack's."""
    for headers in ({}, {"Utm-Internal-Key": ""}):
        side, response = beside.call("GET", "/api/account", headers=headers)
        assert side == "authgate"
        assert response.status_code == 401
