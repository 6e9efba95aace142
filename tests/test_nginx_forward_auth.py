"""Real nginx protects a sample upstream with authgate (``auth_request``).

nginx (Debian's package), `authgate serve` and a small upstream run as processes on
loopback ports; nginx uses the configuration documented in the README
(``examples/nginx/authgate-forward-auth.conf``) with only the ports changed. Skipped
where nginx is not installed (CI installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.processes import AuthgateServer, Process, free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
EXAMPLE = Path(__file__).parents[1] / "examples" / "nginx" / "authgate-forward-auth.conf"
ADMIN_PASSWORD = "nginx-test-operator-password"

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed"),
]


# -- the upstream: echoes what reached it ---------------------------------------------------


class EchoHandler(BaseHTTPRequestHandler):
    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", errors="replace") if length else ""
        payload = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": {name.lower(): value for name, value in self.headers.items()},
                "body": body,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _echo

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


# -- nginx ---------------------------------------------------------------------------------


def start_nginx(workdir: Path, *, authgate_port: int, upstream_port: int) -> tuple[Process, int]:
    """nginx with the documented configuration, only the ports changed."""
    port = free_port()
    snippet = (
        EXAMPLE.read_text()
        .replace("127.0.0.1:8080", f"127.0.0.1:{authgate_port}")
        .replace("127.0.0.1:9000", f"127.0.0.1:{upstream_port}")
        .replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    )
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "authgate-forward-auth.conf").write_text(snippet)
    user = "user root;" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {workdir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (workdir / "nginx.conf").write_text(
        f"""{user}
worker_processes 1;
daemon off;
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp}
    include {workdir / "authgate-forward-auth.conf"};
}}
"""
    )
    process = Process(
        [NGINX, "-p", str(workdir), "-c", str(workdir / "nginx.conf")],
        log_path=workdir / "nginx.out",
        cwd=workdir,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not process.running:
            error_log = (
                (workdir / "error.log").read_text() if (workdir / "error.log").exists() else ""
            )
            pytest.fail(f"nginx exited\n{process.diagnostics()}\n{error_log}")
        try:
            httpx2.get(f"http://127.0.0.1:{port}/", timeout=1.0)
            return process, port
        except httpx2.TransportError:
            time.sleep(0.05)
    process.stop()
    pytest.fail("nginx did not start within 15 s")


@dataclass
class Stack:
    authgate: AuthgateServer
    nginx_url: str
    admin_token: str

    def create_key(self, name: str, **fields: Any) -> str:
        body = {
            "name": name,
            "allowedIp": ["127.0.0.1"],
            "expiresAt": _in(timedelta(days=1)),
            **fields,
        }
        response = httpx2.post(
            f"{self.authgate.base_url}/api/api-keys",
            json=body,
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        self.ids = getattr(self, "ids", {})
        self.ids[created["key"]] = created["id"]
        return str(created["key"])

    def revoke(self, key: str) -> None:
        response = httpx2.delete(
            f"{self.authgate.base_url}/api/api-keys/{self.ids[key]}",
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        assert response.status_code in (200, 204), response.text

    def call(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        return httpx2.request(method, f"{self.nginx_url}{path}", timeout=10.0, **kwargs)


def _in(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, upstream: int) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("nginx-forward-auth")
    authgate = AuthgateServer(
        workdir / "authgate",
        {
            "AUTHGATE_DATA_DIR": str(workdir / "authgate" / "data"),
            "AUTHGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "AUTHGATE_TRUSTED_PROXIES": "127.0.0.1",
            "AUTHGATE_FORWARD_AUTH_RULES": json.dumps(
                [
                    {"path_prefix": "/api/", "methods": ["GET", "HEAD"], "scopes": ["read"]},
                    {"path_prefix": "/api/", "scopes": ["write"]},
                    {"path_prefix": "/admin/", "roles": ["ROLE_ADMIN"]},
                ]
            ),
        },
    )
    nginx: Process | None = None
    try:
        authgate.wait_until_up()
        login = httpx2.post(
            f"{authgate.base_url}/api/authenticate",
            json={"username": "admin", "password": ADMIN_PASSWORD},
        )
        assert login.status_code == 200, login.text
        nginx, port = start_nginx(
            workdir / "nginx", authgate_port=authgate.port, upstream_port=upstream
        )
        yield Stack(authgate, f"http://127.0.0.1:{port}", login.json()["id_token"])
    finally:
        if nginx is not None:
            nginx.stop()
        authgate.stop()


# -- allowed ---------------------------------------------------------------------------------


def test_a_valid_key_reaches_the_upstream_with_identity_headers(stack: Stack) -> None:
    key = stack.create_key("reader", scopes=["read"])
    response = stack.call(
        "GET",
        "/api/orders?page=2",
        headers={"Authorization": f"Bearer {key}", "X-Auth-User": "spoofed-admin"},
    )
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["path"] == "/api/orders?page=2"
    headers = seen["headers"]
    assert headers["x-auth-user"] == "admin"  # not the client's spoofed value
    assert headers["x-auth-method"] == "api_key"
    assert headers["x-auth-key-id"] == key[4:16]
    assert headers["x-auth-scopes"] == "read"
    assert headers["x-auth-roles"] == "ROLE_USER"  # an admin's key without the admin scope
    assert key not in json.dumps(headers)  # the secret stays with nginx
    assert "authorization" not in headers or headers["authorization"] == ""


def test_a_user_token_and_the_utmstack_header_pass_too(stack: Stack) -> None:
    by_token = stack.call(
        "DELETE", "/admin/cache", headers={"Authorization": f"Bearer {stack.admin_token}"}
    )
    assert by_token.status_code == 200, by_token.text
    assert by_token.json()["headers"]["x-auth-method"] == "jwt"
    assert by_token.json()["headers"]["x-auth-roles"] == "ROLE_ADMIN,ROLE_USER"

    key = stack.create_key("utm-header", scopes=["read", "write"])
    by_header = stack.call("PUT", "/api/orders/1", headers={"Utm-Api-Key": key}, json={"n": 1})
    assert by_header.status_code == 200, by_header.text
    assert by_header.json()["body"] == '{"n":1}'  # the body reaches the upstream intact


# -- refused -----------------------------------------------------------------------------------


def test_missing_and_bad_credentials_are_refused_by_nginx_with_401(stack: Stack) -> None:
    missing = stack.call("GET", "/api/orders")
    assert missing.status_code == 401
    assert missing.json() == {"status": 401, "code": "credentials_missing"}
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")

    key = stack.create_key("tampered")
    bad = stack.call("GET", "/api/orders", headers={"Authorization": f"Bearer {key[:-6]}AAAAAA"})
    assert bad.status_code == 401
    assert bad.json()["code"] == "invalid_api_key"


def test_revoked_keys_are_refused_at_once(stack: Stack) -> None:
    key = stack.create_key("to-revoke")
    headers = {"Authorization": f"Bearer {key}"}
    assert stack.call("GET", "/api/orders", headers=headers).status_code == 200
    stack.revoke(key)
    refused = stack.call("GET", "/api/orders", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["code"] == "invalid_api_key"


def test_expired_keys_are_refused(stack: Stack) -> None:
    key = stack.create_key("short-lived", expiresAt=_in(timedelta(seconds=2)))
    headers = {"Authorization": f"Bearer {key}"}
    assert stack.call("GET", "/api/orders", headers=headers).status_code == 200
    time.sleep(2.2)
    refused = stack.call("GET", "/api/orders", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["code"] == "api_key_expired"


def test_ip_denied_keys_are_refused_with_403(stack: Stack) -> None:
    """nginx forwards the client's address (127.0.0.1); the key allows another network."""
    key = stack.create_key("elsewhere", allowedIp=["192.0.2.0/24"])
    refused = stack.call("GET", "/api/orders", headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 403
    assert refused.json()["code"] == "ip_not_allowed"


def test_scope_and_role_rules_are_enforced_through_nginx(stack: Stack) -> None:
    key = stack.create_key("read-only", scopes=["read"])
    headers = {"Authorization": f"Bearer {key}"}
    assert stack.call("GET", "/api/orders", headers=headers).status_code == 200
    write = stack.call("POST", "/api/orders", headers=headers, json={})
    assert write.status_code == 403
    assert write.json()["code"] == "insufficient_scope"
    admin = stack.call("GET", "/admin/users", headers=headers)
    assert admin.status_code == 403
    assert admin.json()["code"] == "forbidden"
    sneaky = stack.call("GET", "/api/../admin/users", headers=headers)
    assert sneaky.status_code in (400, 403)  # nginx itself or authgate's rules


def test_rate_limited_keys_get_429_and_retry_after_from_nginx(stack: Stack) -> None:
    key = stack.create_key("limited", rateLimit="1/minute")
    headers = {"Authorization": f"Bearer {key}"}
    assert stack.call("GET", "/api/orders", headers=headers).status_code == 200
    limited = stack.call("GET", "/api/orders", headers=headers)
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1


def test_nginx_answers_503_when_authgate_is_unreachable(tmp_path: Path, upstream: int) -> None:
    nginx, port = start_nginx(tmp_path, authgate_port=free_port(), upstream_port=upstream)
    try:
        response = httpx2.get(f"http://127.0.0.1:{port}/api/orders", timeout=10.0)
    finally:
        nginx.stop()
    assert response.status_code == 503
    assert response.json()["code"] == "authgate_unavailable"
