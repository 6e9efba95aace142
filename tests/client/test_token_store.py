"""Where the CLI keeps its token: the OS keyring when usable, else a private file."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import keyring
import keyring.backend
import keyring.backends.fail
import keyring.errors
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authgate.client import ClientConfigError
from authgate.client._cli._session import OutputFormat, Session
from authgate.client._token_store import KEYRING_SERVICE, StoredPair, TokenStore
from tests.client.servers import serve_asgi
from tests.client.test_cli import assert_exits, run

URL = "https://auth.example.com"
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNlY3JldA"


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A working keyring, in memory."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # keyring is untyped
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.items:
            raise keyring.errors.PasswordDeleteError(username)
        del self.items[(service, username)]


class BrokenKeyring(MemoryKeyring):
    """A keyring whose backend fails (a locked or absent D-Bus session, say)."""

    def get_password(self, service: str, username: str) -> str | None:
        raise RuntimeError("D-Bus is not running")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise RuntimeError("D-Bus is not running")


@pytest.fixture
def use_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    yield
    keyring.set_keyring(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("use_keyring")
def test_without_keyring_the_token_goes_to_a_private_file(tmp_path: Path) -> None:
    """No keyring backend: tokens.json is 0600 in a 0700 dir, and loads back."""
    keyring.set_keyring(keyring.backends.fail.Keyring())  # type: ignore[no-untyped-call]
    store = TokenStore(tmp_path / "config")
    assert store.save(URL + "/", TOKEN) == "file"
    assert mode(store.tokens_file) == 0o600
    assert mode(store.directory) == 0o700
    assert store.load(URL) == TOKEN
    assert store.delete(URL) is True
    assert store.load(URL) is None
    assert TOKEN not in store.tokens_file.read_text()


@pytest.mark.usefixtures("use_keyring")
def test_working_keyring_holds_the_token_and_no_file_does(tmp_path: Path) -> None:
    """With a usable keyring, the token is stored there only."""
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    store = TokenStore(tmp_path / "config")
    assert store.save(URL, TOKEN) == "keyring"
    assert backend.items == {(KEYRING_SERVICE, URL): TOKEN}
    assert not store.tokens_file.exists()
    assert store.load(URL) == TOKEN
    assert store.delete(URL) is True
    assert backend.items == {}


@pytest.mark.usefixtures("use_keyring")
def test_failing_keyring_backend_falls_back_to_the_file(tmp_path: Path) -> None:
    """Any backend error reads as 'no keyring': the file is used, nothing raises."""
    keyring.set_keyring(BrokenKeyring())
    store = TokenStore(tmp_path / "config")
    assert store.save(URL, TOKEN) == "file"
    assert store.load(URL) == TOKEN
    assert store.delete(URL) is True


@pytest.mark.usefixtures("use_keyring")
def test_keyring_save_removes_an_older_file_copy(tmp_path: Path) -> None:
    """A token moved to the keyring does not linger in the file."""
    keyring.set_keyring(keyring.backends.fail.Keyring())  # type: ignore[no-untyped-call]
    store = TokenStore(tmp_path / "config")
    store.save(URL, "old-token")
    keyring.set_keyring(MemoryKeyring())
    store.save(URL, TOKEN)
    assert "old-token" not in store.tokens_file.read_text()
    assert store.load(URL) == TOKEN


def test_existing_file_with_wide_permissions_is_replaced_privately(tmp_path: Path) -> None:
    """A tokens.json left world-readable is rewritten as 0600."""
    store = TokenStore(tmp_path / "config", use_keyring=False)
    store.directory.mkdir(mode=0o755)
    store.tokens_file.write_text("{}")
    store.tokens_file.chmod(0o644)
    store.save(URL, TOKEN)
    assert mode(store.tokens_file) == 0o600
    assert mode(store.directory) == 0o700


def test_tokens_are_kept_per_server(tmp_path: Path) -> None:
    """Each server URL has its own token; deleting one keeps the other."""
    store = TokenStore(tmp_path, use_keyring=False)
    store.save("https://a.example", "token-a")
    store.save("https://b.example", "token-b")
    store.delete("https://a.example")
    assert store.load("https://a.example") is None
    assert store.load("https://b.example") == "token-b"
    assert store.delete("https://a.example") is False


def test_last_login_url_is_remembered(tmp_path: Path) -> None:
    """remember_url keeps the server of the last login, without a trailing slash."""
    store = TokenStore(tmp_path, use_keyring=False)
    assert store.remembered_url() is None
    store.remember_url("https://a.example/")
    assert TokenStore(tmp_path, use_keyring=False).remembered_url() == "https://a.example"


def test_corrupt_file_reads_as_empty(tmp_path: Path) -> None:
    """A tokens.json that is not JSON is treated as holding nothing."""
    store = TokenStore(tmp_path, use_keyring=False)
    store.tokens_file.write_text("not json")
    assert store.load(URL) is None
    store.save(URL, TOKEN)
    assert store.load(URL) == TOKEN


def test_the_lock_makes_other_holders_wait(tmp_path: Path) -> None:
    """Two commands (here: two stores on the same dir, as two processes would have) take
    turns: the second enters only once the first has saved and left."""
    events: list[str] = []
    first_inside, second_tried = threading.Event(), threading.Event()

    def first() -> None:
        with TokenStore(tmp_path, use_keyring=False).locked():
            events.append("first in")
            first_inside.set()
            second_tried.wait(timeout=5)
            time.sleep(0.2)  # the second would enter now if the lock did not hold it
            events.append("first out")

    def second() -> None:
        first_inside.wait(timeout=5)
        second_tried.set()
        with TokenStore(tmp_path, use_keyring=False).locked():
            events.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert events == ["first in", "first out", "second in"]
    assert mode(tmp_path / "tokens.lock") == 0o600


def test_without_a_lock_file_the_store_still_works(tmp_path: Path) -> None:
    """A dir where no lock file can be made (read-only, say) runs unlocked."""
    directory = tmp_path / "not-a-dir"
    directory.write_text("a file where the dir should be")
    with TokenStore(directory, use_keyring=False).locked():
        pass


def test_a_command_holds_the_lock_while_it_uses_the_stored_pair(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From loading the pair to the end of the client (its refreshes and their saves)."""
    for name in ("AUTHGATE_API_KEY", "AUTHGATE_USERNAME", "AUTHGATE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    TokenStore(config_dir).save_pair(URL, StoredPair("access", "refresh"))
    session = Session(URL, OutputFormat.table, False, None, 10.0)
    entered = threading.Event()

    def other_command() -> None:
        with TokenStore(config_dir).locked():
            entered.set()

    with session.client():
        other = threading.Thread(target=other_command)
        other.start()
        assert not entered.wait(timeout=0.3)
    assert entered.wait(timeout=5)
    other.join(timeout=5)


posix_only = pytest.mark.skipif(os.name != "posix", reason="owners and modes are POSIX's")


def every_use(store: TokenStore) -> list[Callable[[], object]]:
    def lock() -> None:
        with store.locked():
            pass

    return [
        store.remembered_url,
        lambda: store.remember_url(URL),
        lambda: store.load(URL),
        lambda: store.load_pair(URL),
        lambda: store.save(URL, TOKEN),
        lambda: store.save_pair(URL, StoredPair("access", "refresh")),
        lambda: store.delete(URL),
        lock,
    ]


@posix_only
@pytest.mark.parametrize("permissions", [0o777, 0o770, 0o733], ids=oct)
def test_a_directory_others_may_write_to_is_refused(tmp_path: Path, permissions: int) -> None:
    """Whoever may write to the config dir can replace client.json (the URL the next
    command sends AUTHGATE_API_KEY to) or tokens.json: the store reads and writes
    nothing there, and says which directory and what to do (it was used as it was)."""
    directory = tmp_path / "shared"
    directory.mkdir()
    (directory / "client.json").write_text(json.dumps({"url": "https://evil.example"}))
    directory.chmod(permissions)
    store = TokenStore(directory, use_keyring=False)
    for use in every_use(store):
        with pytest.raises(ClientConfigError, match=re.escape(str(directory))) as refused:
            use()
        assert "chmod 700" in str(refused.value)
    assert not store.tokens_file.exists()
    assert mode(directory) == permissions  # not quietly changed: its contents are suspect


@posix_only
def test_a_directory_of_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TokenStore(tmp_path, use_keyring=False)
    store.remember_url(URL)
    monkeypatch.setattr(os, "geteuid", lambda: tmp_path.stat().st_uid + 1)
    for use in every_use(store):
        with pytest.raises(ClientConfigError, match="belongs to another user"):
            use()


@posix_only
def test_a_private_directory_and_one_not_made_yet_are_used(tmp_path: Path) -> None:
    """0700 and 0755 (others may read, not write) are used; a new one is made 0700."""
    for permissions in (0o700, 0o755):
        directory = tmp_path / f"mode-{permissions:o}"
        directory.mkdir()
        directory.chmod(permissions)
        TokenStore(directory, use_keyring=False).remember_url(URL)
        assert TokenStore(directory, use_keyring=False).remembered_url() == URL
    fresh = TokenStore(tmp_path / "new" / "config", use_keyring=False)
    fresh.save(URL, TOKEN)
    assert mode(fresh.directory) == 0o700


@posix_only
def test_the_cli_sends_nothing_where_the_url_came_from_a_shared_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack: another user wrote their server into client.json of a directory they
    may write to. The CLI stops with one line naming the directory (exit 2) before any
    request; the API key never reaches that server."""
    seen: list[str] = []

    async def account(request: Request) -> Response:
        seen.append(request.headers.get("authorization", ""))
        return JSONResponse({"login": "mallory"})

    directory = tmp_path / "shared"
    directory.mkdir()
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("AUTHGATE_CLIENT_CONFIG_DIR", str(directory))
    monkeypatch.setenv("AUTHGATE_API_KEY", "agk_x_not-a-real-key-but-long-enough")
    monkeypatch.delenv("AUTHGATE_URL", raising=False)
    with serve_asgi(Starlette(routes=[Route("/api/account", account)])) as evil:
        (directory / "client.json").write_text(json.dumps({"url": evil}))
        directory.chmod(0o777)
        result = run("whoami")
    assert_exits(result, 2)
    message = " ".join(result.stderr.split())
    assert str(directory) in message
    assert "another user could replace the server URL" in message
    assert seen == []
