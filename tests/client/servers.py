"""Servers on loopback for the client tests: ``authgate serve`` in a subprocess, and any
ASGI app (the fake UTMStack) under uvicorn in a thread."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests import processes
from tests.processes import free_port

AUTHGATE_CLIENT = Path(sys.executable).with_name("authgate-client")
ADMIN_PASSWORD = "operator-password-for-client-tests"

# Tests log in a lot from one address, some with wrong passwords or keys on purpose.
_GENEROUS_THROTTLING = {
    "AUTHGATE_LOGIN_IP_MAX_FAILURES": "100000",
    "AUTHGATE_LOGIN_PAIR_MAX_FAILURES": "1000",
    "AUTHGATE_LOGIN_ACCOUNT_MAX_FAILURES": "100000",
    "AUTHGATE_KEY_IP_MAX_FAILURES": "100000",
}


def clean_environment() -> dict[str, str]:
    """This process's environment without any AUTHGATE_*/UTMSTACK_* variable."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AUTHGATE_", "UTMSTACK_"))
    }


class AuthgateServer(processes.AuthgateServer):
    """``authgate serve`` on a free loopback port, with a known admin password."""

    def __init__(self, workdir: Path) -> None:
        port = free_port()
        super().__init__(
            workdir,
            {
                "AUTHGATE_DATA_DIR": str(workdir / "data"),
                "AUTHGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "AUTHGATE_USAGE_FLUSH_INTERVAL_SECONDS": "0.1",
                "AUTHGATE_AUDIT_FLUSH_INTERVAL_SECONDS": "0.1",
                **_GENEROUS_THROTTLING,
            },
            port=port,
            log_name=f"authgate-{port}.log",
        )
        self.url = self.base_url
        self.admin_password = ADMIN_PASSWORD


@contextmanager
def serve_asgi(app: Any, **ssl: Any) -> Iterator[str]:
    """Serve an ASGI app on a free loopback port in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ws="none",
        http="h11",
        access_log=False,
        **ssl,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the test server did not start within 10 s")
        time.sleep(0.02)
    scheme = "https" if ssl else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
