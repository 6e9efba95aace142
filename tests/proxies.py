"""Real reverse proxies and upstreams for the forward-auth end-to-end tests.

nginx and Caddy run the documented example configurations (``examples/nginx``,
``examples/caddy``) with only their ports changed; the upstream is a small echo server
or a real Tomcat (Debian's ``tomcat10``, run as a plain process from a private
``CATALINA_BASE``). Everything listens on loopback ports; each process writes its
output to a log file that failures quote. Tests that need a program which is not
installed are skipped (CI installs them all: see ``.ci/run``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.processes import AuthgateServer, Process, free_port

EXAMPLES = Path(__file__).parents[1] / "examples"
NGINX_EXAMPLE = EXAMPLES / "nginx" / "authgate-forward-auth.conf"
CADDY_EXAMPLE = EXAMPLES / "caddy" / "Caddyfile"
# The ports the examples are written with: authgate, the upstream, the proxy itself.
AUTHGATE_PORT, UPSTREAM_PORT, PROXY_PORT = 8080, 9000, 8000

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CADDY = shutil.which("caddy") or "/usr/bin/caddy"
CATALINA_HOME = Path("/usr/share/tomcat10")
TOMCAT_CONF = Path("/etc/tomcat10")
JAVA = shutil.which("java")

needs_nginx = pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed")
needs_caddy = pytest.mark.skipif(not Path(CADDY).exists(), reason="caddy is not installed")
needs_tomcat = pytest.mark.skipif(
    not (CATALINA_HOME / "bin" / "bootstrap.jar").exists()
    or not (TOMCAT_CONF / "web.xml").exists()
    or JAVA is None,
    reason="tomcat10 (Debian package) or java is not installed",
)


def with_ports(text: str, *, authgate: int, upstream: int, proxy: int) -> str:
    """An example configuration with its three loopback ports replaced."""
    return (
        text.replace(f"127.0.0.1:{AUTHGATE_PORT}", f"127.0.0.1:{authgate}")
        .replace(f"127.0.0.1:{UPSTREAM_PORT}", f"127.0.0.1:{upstream}")
        .replace(f"127.0.0.1:{PROXY_PORT}", f"127.0.0.1:{proxy}")
        .replace(f"http://:{PROXY_PORT}", f"http://:{proxy}")
    )


def wait_until_serving(process: Process, port: int, name: str, *, timeout: float) -> None:
    """Until ``port`` answers HTTP (any status); fails with the process's output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.running:
            process.stop()
            pytest.fail(f"{name} exited\n{process.diagnostics()}")
        try:
            httpx2.get(f"http://127.0.0.1:{port}/", timeout=2.0)
            return
        except httpx2.TransportError:
            time.sleep(0.1)
    diagnostics = process.diagnostics()
    process.stop()
    pytest.fail(f"{name} did not start within {timeout} s\n{diagnostics}")


# -- the echo upstream: what reached it ------------------------------------------------------


class EchoHandler(BaseHTTPRequestHandler):
    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", errors="replace") if length else ""
        payload = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": {name.lower(): value for name, value in self.headers.items()},
                "environ": cgi_environ(self.headers.items()),
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


def cgi_environ(headers: list[tuple[str, str]]) -> dict[str, str]:
    """The ``HTTP_*`` variables a CGI-style upstream (WSGI's ``wsgiref``, Rack, PHP)
    makes of ``headers``: ``-`` and ``_`` are one there, so ``X-Auth_User`` and
    ``X-Auth-User`` both land in ``HTTP_X_AUTH_USER`` (values joined with commas)."""
    environ: dict[str, str] = {}
    for name, value in headers:
        key = "HTTP_" + name.replace("-", "_").upper()
        environ[key] = f"{environ[key]},{value.strip()}" if key in environ else value.strip()
    return environ


@contextmanager
def echo_upstream() -> Iterator[int]:
    """An upstream that answers every request with what reached it (JSON); its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


# -- nginx -------------------------------------------------------------------------------------


def start_nginx(workdir: Path, *, authgate_port: int, upstream_port: int) -> tuple[Process, int]:
    """nginx with the documented configuration, only the ports changed."""
    port = free_port()
    snippet = with_ports(
        NGINX_EXAMPLE.read_text(), authgate=authgate_port, upstream=upstream_port, proxy=port
    )
    return run_nginx(workdir, snippet, port, name=NGINX_EXAMPLE.name), port


def run_nginx(workdir: Path, snippet: str, port: int, *, name: str) -> Process:
    """nginx serving ``snippet`` (written to ``workdir/name`` and included in its http
    block), once ``port`` answers; its pid, logs and temporary files stay in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / name).write_text(snippet)
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
    include {workdir / name};
}}
"""
    )
    process = Process(
        [NGINX, "-p", str(workdir), "-c", str(workdir / "nginx.conf")],
        log_path=workdir / "nginx.out",
        cwd=workdir,
    )
    wait_until_serving(process, port, "nginx", timeout=15)
    return process


# -- Caddy -------------------------------------------------------------------------------------


def start_caddy(workdir: Path, *, authgate_port: int, upstream_port: int) -> tuple[Process, int]:
    """Caddy with the documented Caddyfile, only the ports changed; its state (HOME, XDG
    directories) stays in ``workdir``."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    caddyfile = workdir / "Caddyfile"
    caddyfile.write_text(
        with_ports(
            CADDY_EXAMPLE.read_text(), authgate=authgate_port, upstream=upstream_port, proxy=port
        )
    )
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
    }
    process = Process(
        [CADDY, "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
        log_path=workdir / "caddy.out",
        cwd=workdir,
        env=environment,
    )
    wait_until_serving(process, port, "caddy", timeout=15)
    return process, port


# -- Tomcat --------------------------------------------------------------------------------------

TOMCAT_SERVER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Debian's tomcat10 with its default connector settings, on one loopback port. -->
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector address="127.0.0.1" port="{port}" protocol="HTTP/1.1" connectionTimeout="20000"/>
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false"/>
    </Engine>
  </Service>
</Server>
"""

TOMCAT_LOGGING = """handlers = java.util.logging.ConsoleHandler
.handlers = java.util.logging.ConsoleHandler
java.util.logging.ConsoleHandler.level = INFO
java.util.logging.ConsoleHandler.formatter = org.apache.juli.OneLineFormatter
.level = INFO
"""

# Each area is one JSP mapped to a URL pattern; it prints a marker that no refused
# request may ever show, with what the servlet container resolved.
TOMCAT_AREAS = {
    "admin": ["/admin/*"],
    "public": ["/public/*"],
    "orders": ["/api/orders", "/api/orders/*"],
    "internal": ["/internal/*"],
}

TOMCAT_JSP = """<%@ page contentType="text/plain; charset=UTF-8" %>\
AREA-MARKER <%= config.getInitParameter("area") %> \
method=<%= request.getMethod() %> \
servlet=<%= request.getServletPath() %> \
info=<%= request.getPathInfo() %> \
user=<%= request.getHeader("X-Auth-User") %>
"""


def marker(area: str) -> str:
    """What the Tomcat app answers for ``area`` (see ``TOMCAT_JSP``)."""
    return f"AREA-MARKER {area}"


def _tomcat_web_xml() -> str:
    servlets = []
    for area, patterns in TOMCAT_AREAS.items():
        mappings = "".join(f"<url-pattern>{pattern}</url-pattern>" for pattern in patterns)
        servlets.append(
            f"""  <servlet>
    <servlet-name>{area}</servlet-name>
    <jsp-file>/WEB-INF/area.jsp</jsp-file>
    <init-param><param-name>area</param-name><param-value>{area}</param-value></init-param>
  </servlet>
  <servlet-mapping><servlet-name>{area}</servlet-name>{mappings}</servlet-mapping>"""
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0" '
        'metadata-complete="true">\n' + "\n".join(servlets) + "\n</web-app>\n"
    )


def start_tomcat(base: Path) -> tuple[Process, int]:
    """Debian's Tomcat 10.1 as a plain process from a private CATALINA_BASE in ``base``:
    the packaged conf (web.xml, context.xml, catalina.properties), a server.xml with one
    loopback connector and no shutdown port, and a ROOT app of one JSP per area."""
    port = free_port()
    conf = base / "conf"
    webinf = base / "webapps" / "ROOT" / "WEB-INF"
    for directory in (conf, webinf, base / "work", base / "temp", base / "logs", base / "lib"):
        directory.mkdir(parents=True, exist_ok=True)
    for name in ("web.xml", "context.xml", "catalina.properties"):
        shutil.copyfile(TOMCAT_CONF / name, conf / name)
    (conf / "server.xml").write_text(TOMCAT_SERVER_XML.format(port=port))
    (conf / "logging.properties").write_text(TOMCAT_LOGGING)
    (webinf / "web.xml").write_text(_tomcat_web_xml())
    (webinf / "area.jsp").write_text(TOMCAT_JSP)
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(base),
        "CATALINA_HOME": str(CATALINA_HOME),
        "CATALINA_BASE": str(base),
        "CATALINA_TMPDIR": str(base / "temp"),
        "CATALINA_OPTS": "-Xms64m -Xmx256m -XX:TieredStopAtLevel=1",
    }
    if "JAVA_HOME" in os.environ:
        environment["JAVA_HOME"] = os.environ["JAVA_HOME"]
    process = Process(
        [str(CATALINA_HOME / "bin" / "catalina.sh"), "run"],
        log_path=base / "catalina.out",
        cwd=base,
        env=environment,
    )
    wait_until_serving(process, port, "tomcat", timeout=60)
    return process, port


# Headers some frameworks take to change the method or path they route; the examples
# never pass them upstream.
OVERRIDES = {
    "X-HTTP-Method-Override": "DELETE",
    "X-HTTP-Method": "DELETE",
    "X-Method-Override": "DELETE",
    "X-Original-URL": "/admin/x",
    "X-Rewrite-URL": "/admin/x",
    "X-Forwarded-Prefix": "/admin",
}

# A client's own description of its request (the last pair agreeing with the request, so
# that authgate lets it through): the examples never pass it upstream, where it would be
# read as what was checked.
REQUEST_DESCRIPTION = {
    "X-Forwarded-Method": "DELETE",
    "X-Forwarded-Uri": "/public/x",
    "X-Original-Method": "GET",
    "X-Original-URI": "/api/orders",
}


# -- raw requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: str


def raw_request(
    port: int, method: str, target: str, headers: dict[str, str], *, body: bytes = b""
) -> RawResponse:
    """Sends ``method target HTTP/1.1`` exactly as given (no client normalises the target:
    dot segments, ``;params`` and escapes reach the proxy as written)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    with socket.create_connection(("127.0.0.1", port), timeout=15) as connection:
        connection.sendall(request)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding", "").lower() == "chunked":
        payload = _dechunked(payload)
    return RawResponse(int(status_line.split()[1]), parsed, payload.decode("utf-8", "replace"))


def _dechunked(payload: bytes) -> bytes:
    body = b""
    while payload:
        size_line, _, rest = payload.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        body += rest[:size]
        payload = rest[size + 2 :]
    return body


# -- authgate with a proxy in front ----------------------------------------------------------------

ADMIN_PASSWORD = "proxy-test-operator-password"
USER_PASSWORD = "proxy-test-user-password"


def in_(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Stack:
    """authgate (with an admin and a ROLE_USER "alice") behind a proxy at ``proxy_url``."""

    authgate: AuthgateServer
    proxy_port: int
    admin_token: str
    user_token: str
    ids: dict[str, int] = field(default_factory=dict)

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def create_key(self, name: str, *, token: str | None = None, **fields: Any) -> str:
        body = {"name": name, "allowedIp": ["127.0.0.1"], "expiresAt": in_(timedelta(days=1))}
        body.update(fields)
        response = httpx2.post(
            f"{self.authgate.base_url}/api/api-keys",
            json=body,
            headers={"Authorization": f"Bearer {token or self.admin_token}"},
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        self.ids[created["key"]] = created["id"]
        return str(created["key"])

    def revoke(self, key: str) -> None:
        response = httpx2.delete(
            f"{self.authgate.base_url}/api/api-keys/{self.ids[key]}",
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        assert response.status_code in (200, 204), response.text

    def call(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        return httpx2.request(method, f"{self.proxy_url}{path}", timeout=10.0, **kwargs)

    def raw(self, method: str, target: str, headers: dict[str, str]) -> RawResponse:
        return raw_request(self.proxy_port, method, target, headers)

    def audit(self, event_type: str) -> list[dict[str, Any]]:
        """The audit records of one type (waits for the trail's batch to be written)."""
        deadline = time.monotonic() + 10
        while True:
            response = httpx2.get(
                f"{self.authgate.base_url}/api/audit-events",
                params={"type": event_type, "sort": "id,asc", "size": 200},
                headers={"Authorization": f"Bearer {self.admin_token}"},
            )
            assert response.status_code == 200, response.text
            records: list[dict[str, Any]] = response.json()
            if records or time.monotonic() > deadline:
                return records
            time.sleep(0.2)


def start_authgate(workdir: Path, environment: dict[str, str]) -> tuple[AuthgateServer, str, str]:
    """authgate trusting the proxy on 127.0.0.1; an admin's and alice's tokens."""
    authgate = AuthgateServer(
        workdir,
        {
            "AUTHGATE_DATA_DIR": str(workdir / "data"),
            "AUTHGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "AUTHGATE_TRUSTED_PROXIES": "127.0.0.1",
            "AUTHGATE_AUDIT_FLUSH_INTERVAL_SECONDS": "0.2",
            **environment,
        },
    )
    try:
        authgate.wait_until_up()
        admin = _login(authgate, "admin", ADMIN_PASSWORD)
        created = httpx2.post(
            f"{authgate.base_url}/api/users",
            json={
                "login": "alice",
                "email": "alice@example.com",
                "password": USER_PASSWORD,
                "authorities": ["ROLE_USER"],
            },
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert created.status_code == 201, created.text
        return authgate, admin, _login(authgate, "alice", USER_PASSWORD)
    except BaseException:
        authgate.stop()
        raise


def _login(authgate: AuthgateServer, username: str, password: str) -> str:
    response = httpx2.post(
        f"{authgate.base_url}/api/authenticate",
        json={"username": username, "password": password},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["id_token"])
