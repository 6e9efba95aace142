"""``authgate service-credentials create|list|rotate|revoke`` (issue 17): the operator
manages what other services send in ``X-Internal-Key``, in-process with CliRunner; the
credentials printed are checked against the app on the same data dir."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx2

from authgate.app import create_app
from authgate.settings import Settings
from tests.test_cli import (
    assert_exits,
    data_dir,  # noqa: F401 (a fixture)
    invoke,
    table_rows,
)


def json_of(*args: str) -> Any:
    result = invoke(*args, "-o", "json")
    assert_exits(result, 0)
    return json.loads(result.stdout)


# The internal key check's answers for an unknown API key: the credential accepted (the
# key is what it refuses), or the credential refused. Both are 401, as in v12.
ACCEPTED = (401, {"error": "invalid api key"})
REFUSED = (401, {"error": "invalid internal key"})


def internal_status(credential: str) -> tuple[int, object]:
    """The internal key check's answer with ``credential``: ACCEPTED or REFUSED."""

    async def call() -> tuple[int, object]:
        app = create_app(Settings())
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app, client=("127.0.0.1", 5000))
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post(
                    "/api/v1/api-keys/authenticate",
                    json={"apiKey": "agk_unknown", "clientIp": "192.0.2.1"},
                    headers={"X-Internal-Key": credential},
                )
        return response.status_code, response.json()

    return asyncio.run(call())


def test_create_list_rotate_revoke(data_dir: Path) -> None:  # noqa: F811
    created = json_of("service-credentials", "create", "--name", "log-input")
    assert created["credential"].startswith(f"ags_{created['id']}_")
    assert created["endpoints"] == ["api-keys.authenticate"]
    assert internal_status(created["credential"]) == ACCEPTED

    listed = invoke("service-credentials", "list")
    assert_exits(listed, 0)
    assert created["credential"] not in listed.stdout
    assert [row[:3] for row in table_rows(listed.stdout)] == [
        [created["id"], "log-input", "active"]
    ]

    rotated = json_of("service-credentials", "rotate", created["id"], "--grace", "1h")
    assert rotated["credential"] != created["credential"]
    assert internal_status(created["credential"]) == ACCEPTED  # within the grace period
    assert internal_status(rotated["credential"]) == ACCEPTED

    revoked = invoke("service-credentials", "revoke", created["id"])
    assert_exits(revoked, 0)
    assert internal_status(rotated["credential"]) == REFUSED
    assert json_of("service-credentials", "list") == []
    everything = json_of("service-credentials", "list", "--include-revoked")
    assert [c["status"] for c in everything] == ["revoked"]


def test_refusals_are_one_line_and_an_exit_code(data_dir: Path) -> None:  # noqa: F811
    unknown = invoke("service-credentials", "create", "--name", "x", "--endpoint", "users.delete")
    assert_exits(unknown, 1)
    assert "Unknown internal endpoint" in unknown.output
    assert_exits(invoke("service-credentials", "revoke", "nosuchid"), 1)
    assert_exits(invoke("service-credentials", "rotate", "nosuchid", "--grace", "8d"), 1)


# UTMStack replay: the installation's one INTERNAL_KEY, as its installer makes it.
INSTALLATION_KEY = "q3ZbT8mWx1LcR7vN0pKd5hYs2GfJ9aEu"
NEXT_KEY = "H4kPz9WcQ2nVb7XsL1mT8rYd3FgJ6aNe"


def test_adopting_the_services_secret_from_stdin(data_dir: Path) -> None:  # noqa: F811
    """create|rotate --secret-stdin: UTMStack's log-input keeps sending its INTERNAL_KEY;
    the secret is read from standard input, never printed, and works at once."""
    result = invoke(
        "service-credentials",
        "create",
        "--name",
        "utmstack-log-input",
        "--secret-stdin",
        "-o",
        "json",
        input=INSTALLATION_KEY + "\n",
    )
    assert_exits(result, 0)
    assert INSTALLATION_KEY not in result.output
    created = json.loads(result.stdout)
    assert created["adopted"] is True
    assert "credential" not in created
    assert internal_status(INSTALLATION_KEY) == ACCEPTED

    table_output = invoke(
        "service-credentials",
        "rotate",
        created["id"],
        "--grace",
        "1h",
        "--secret-stdin",
        input=NEXT_KEY + "\n",
    )
    assert_exits(table_output, 0)
    assert "not shown" in table_output.output
    assert NEXT_KEY not in table_output.output
    assert internal_status(INSTALLATION_KEY) == ACCEPTED  # within the grace period
    assert internal_status(NEXT_KEY) == ACCEPTED
    listed = invoke("service-credentials", "list")
    assert INSTALLATION_KEY not in listed.output
    assert NEXT_KEY not in listed.output

    assert_exits(invoke("service-credentials", "revoke", created["id"]), 0)
    assert internal_status(NEXT_KEY) == REFUSED
    assert internal_status(INSTALLATION_KEY) == REFUSED
    audit = invoke("audit", "export", "--format", "json")
    assert_exits(audit, 0)
    assert "SERVICE_CREDENTIAL_ROTATED" in audit.output
    assert INSTALLATION_KEY not in audit.output
    assert NEXT_KEY not in audit.output


def test_a_weak_or_missing_secret_is_refused_clearly(data_dir: Path) -> None:  # noqa: F811
    for weak, message in (
        ("too-short-secret", "at least 32 characters"),
        ("a" * 40, "too weak"),
        ("Passw0rd!" * 4, "too weak"),
    ):
        result = invoke(
            "service-credentials", "create", "--name", "x", "--secret-stdin", input=weak + "\n"
        )
        assert_exits(result, 1)
        assert message in result.output
        assert weak not in result.output
    empty = invoke("service-credentials", "create", "--name", "x", "--secret-stdin", input="")
    assert_exits(empty, 1)
    assert "no secret on standard input" in empty.output
    assert json_of("service-credentials", "list") == []
