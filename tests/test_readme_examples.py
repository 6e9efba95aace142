"""The README's walk-through works as written on the reader's own machine.

A new adopter copies the Quick start and the API-key steps into a terminal on a laptop:
the key example must admit the address they are on, its expiry must not age out, and the
alert-rule example must add something rather than copy a default rule.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from authgate.services.alerts.rules import DEFAULT_RULES
from tests.conftest import Harness, bearer

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _sh_block_containing(marker: str) -> str:
    blocks: list[str] = re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL)
    matching = [block for block in blocks if marker in block]
    assert len(matching) == 1, f"expected one sh block with {marker!r}"
    return matching[0]


def _json_body(block: str) -> str:
    """The -d '...' argument of a curl line, with its shell quoting undone."""
    match = re.search(r"-d '(.*?)'\n", block + "\n", flags=re.DOTALL)
    assert match is not None
    return match.group(1)


def _readme_expiry() -> str:
    """Runs the README's own command that computes the expiry date."""
    block = _sh_block_containing("/api/api-keys \\")
    line = next(line for line in block.splitlines() if line.startswith("EXPIRES="))
    command = re.fullmatch(r"EXPIRES=\$\(python3 -c '(.*)'\)", line)
    assert command is not None, line
    result = subprocess.run(
        [sys.executable, "-c", command.group(1)], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


async def test_readme_key_example_works_from_the_readers_machine(
    harness: Harness, admin_token: str
) -> None:
    block = _sh_block_containing("/api/api-keys \\")
    body = _json_body(block).replace("'\"$EXPIRES\"'", _readme_expiry())
    created = await harness.client.post(
        "/api/api-keys", json=json.loads(body), headers=bearer(admin_token)
    )
    assert created.status_code == 201, created.text
    # The in-process client calls from 127.0.0.1, as curl on the reader's machine does.
    used = await harness.client.get("/api/account", headers=bearer(created.json()["key"]))
    assert used.status_code == 200, used.text


def test_readme_key_example_has_no_fixed_expiry_date() -> None:
    block = _sh_block_containing("/api/api-keys \\")
    assert not re.search(r'"expiresAt":\s*"\d{4}-', block)


def test_readme_quick_start_says_how_to_change_the_port() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "AUTHGATE_PORT=" in quick_start
    assert "--port" in quick_start


def test_readme_describes_iat_as_seconds() -> None:
    assert "`iat` (milliseconds)" not in README
    assert re.search(r"`iat` \(seconds since the epoch as a float", README)


def test_readme_alert_rule_example_is_not_a_default_rule() -> None:
    block = _sh_block_containing("/api/alert-rules")
    rule = json.loads(_json_body(block))
    defaults = {(r.kind, r.threshold, r.window_seconds) for r in DEFAULT_RULES}
    assert (rule["kind"], rule["threshold"], rule["windowSeconds"]) not in defaults
    assert rule["name"] not in {r.name for r in DEFAULT_RULES}
