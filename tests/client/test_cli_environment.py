"""``authgate-client`` reads ``AUTHGATE_CA_BUNDLE`` and ``AUTHGATE_TIMEOUT`` as the SDK
does (README lists them for both); ``--ca-bundle`` and ``--timeout`` win over them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certificates import write_certificates
from tests.client import utmstack_fake as utm
from tests.client.servers import serve_asgi
from tests.client.stalling_server import StallingServer
from tests.client.test_cli import assert_exits, run

KEY = "agk_x_not-a-real-key-but-long-enough"


@pytest.fixture(autouse=True)
def _environment(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AUTHGATE_CA_BUNDLE", "AUTHGATE_TIMEOUT", "AUTHGATE_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The fake UTMStack over HTTPS with a certificate from a private CA."""
    ca_file, cert_file, key_file = write_certificates(tmp_path)
    fake = utm.FakeUtmStack(version="v10")
    with serve_asgi(fake.app(), ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)) as url:
        yield url, ca_file


def test_the_ca_bundle_comes_from_the_environment(
    tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """AUTHGATE_CA_BUNDLE trusts the private CA: the command succeeds."""
    url, ca_file = tls_server
    monkeypatch.setenv("AUTHGATE_USERNAME", utm.USER)
    monkeypatch.setenv("AUTHGATE_PASSWORD", utm.PASSWORD)
    monkeypatch.setenv("AUTHGATE_CA_BUNDLE", str(ca_file))
    result = run("--url", url, "whoami")
    assert_exits(result, 0)
    assert utm.USER in result.stdout


def test_without_the_ca_bundle_the_certificate_is_refused(
    tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counter-check: the same command without it has no answer (exit 8)."""
    url, _ = tls_server
    monkeypatch.setenv("AUTHGATE_USERNAME", utm.USER)
    monkeypatch.setenv("AUTHGATE_PASSWORD", utm.PASSWORD)
    result = run("--url", url, "whoami")
    assert_exits(result, 8)


def test_a_missing_ca_bundle_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_API_KEY", KEY)
    monkeypatch.setenv("AUTHGATE_CA_BUNDLE", "/nonexistent/ca.pem")
    result = run("--url", "https://127.0.0.1:9", "whoami")
    assert_exits(result, 2)
    assert "/nonexistent/ca.pem" in result.stderr


def test_insecure_and_a_ca_bundle_in_the_environment_contradict(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AUTHGATE_API_KEY", KEY)
    monkeypatch.setenv("AUTHGATE_CA_BUNDLE", str(tmp_path / "ca.pem"))
    result = run("--url", "https://127.0.0.1:9", "--insecure", "whoami")
    assert_exits(result, 2)
    assert "AUTHGATE_CA_BUNDLE" in result.stderr


@pytest.mark.parametrize("how", ["AUTHGATE_TIMEOUT", "--timeout"])
def test_the_timeout_comes_from_the_environment_or_the_option(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that never answers: exit 8 after the timeout given, not the default 10 s
    (the option wins over the variable)."""
    monkeypatch.setenv("AUTHGATE_API_KEY", KEY)
    with StallingServer() as server:
        started = time.monotonic()
        if how == "AUTHGATE_TIMEOUT":
            monkeypatch.setenv("AUTHGATE_TIMEOUT", "0.3")
            result = run("--url", server.url, "whoami")
        else:
            monkeypatch.setenv("AUTHGATE_TIMEOUT", "30")
            result = run("--url", server.url, "--timeout", "0.3", "whoami")
        elapsed = time.monotonic() - started
    assert_exits(result, 8)
    assert "Timeout" in result.stderr
    assert elapsed < 5


@pytest.mark.parametrize("value", ["soon", "0", "-1"])
def test_a_bad_timeout_in_the_environment_is_a_usage_error(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHGATE_API_KEY", KEY)
    monkeypatch.setenv("AUTHGATE_TIMEOUT", value)
    result = run("--url", "http://127.0.0.1:9", "whoami")
    assert_exits(result, 2)
    assert "AUTHGATE_TIMEOUT" in result.stderr
