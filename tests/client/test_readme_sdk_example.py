"""The README's SDK example ("Explicit settings, both methods, sync and async") runs
against ``authgate serve`` as written, but for its server and user.

``tests/test_readme_examples.py`` checks the README's shell steps against the app in
process; this example needs a real server to call, which the SDK tests start."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.client.servers import AuthgateServer
from tests.client.support import USER_PASSWORD

pytestmark = pytest.mark.slow

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_the_sync_and_async_example_runs(
    authgate_server: AuthgateServer,
    fresh_user: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
    (example,) = [block for block in blocks if "# Method 2: an API key" in block]
    # The reader's server and user; everything else as written: the key it creates is
    # allowed from 127.0.0.1, where Method 2 uses it (it was not: 403; black-box review).
    example = example.replace("https://authgate.example.com", authgate_server.url)
    example = example.replace('"alice"', repr(fresh_user))
    assert authgate_server.url.startswith("http://127.0.0.1:")
    monkeypatch.setenv("ALICE_PASSWORD", USER_PASSWORD)
    exec(compile(example, "README.md", "exec"), {"__name__": "readme_example"})  # noqa: S102
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("CreatedApiKey(id=")
    assert printed[1].startswith("ci-deploy agk_")
    assert printed[-1] == fresh_user
