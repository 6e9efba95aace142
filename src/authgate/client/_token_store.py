"""Where ``authgate-client login`` keeps its token between commands.

In the operating system's keyring (macOS Keychain, Windows Credential Locker, Secret
Service) when the ``keyring`` package is installed and its backend works; otherwise in
``tokens.json`` under the client's config dir, created private (file 0600, dir 0700)
before anything is written to it. Any keyring failure — no backend
(``NoKeyringError``), a locked or absent D-Bus session, an import error — means "no
keyring", never a crash. Tokens are keyed by server URL; the token itself is never
printed or logged.

After ``login --v12`` the entry is a v12 token pair, as JSON: the refresh token (a
secret like a password: it renews the session until revoked) and the latest access
token, replaced after every refresh since the previous refresh token no longer works.

The URL of the last login is kept beside it (``client.json``, not a secret), so the
commands after ``login --url`` need no ``--url``.

Commands that use a stored login hold ``tokens.lock`` (an advisory ``flock``, POSIX only)
from loading the pair to saving its successor: two commands refreshing with the same
refresh token would be reuse, and the server would end the session.

On POSIX the store refuses a directory owned by another user, or that its group or
others may write to (``ClientConfigError``): whoever can write there can replace
``client.json`` (the URL, so the next command sends ``AUTHGATE_API_KEY`` or the password
to their server) or ``tokens.json`` (their token: your commands act on their account).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from authgate.client._exceptions import ClientConfigError

__all__ = ["KEYRING_SERVICE", "StoredPair", "TokenStore"]

KEYRING_SERVICE = "authgate-client"

Location = Literal["keyring", "file"]


@dataclass(frozen=True, slots=True)
class StoredPair:
    """A v12 login kept between commands; ``repr`` shows neither token."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)


class TokenStore:
    """Tokens by server URL, in the keyring or a private file."""

    def __init__(self, directory: Path, *, use_keyring: bool = True) -> None:
        self.directory = directory
        self.tokens_file = directory / "tokens.json"
        self.settings_file = directory / "client.json"
        self.lock_file = directory / "tokens.lock"
        self._use_keyring = use_keyring

    def check_directory(self) -> None:
        """Refuse (``ClientConfigError``) a directory another user could write to, on
        POSIX; every method of the store checks first. A directory not made yet is
        fine: the store makes it 0700."""
        problem = _unsafe(self.directory)
        if problem is not None:
            raise ClientConfigError(
                f"the client's config directory {self.directory} {problem}: another user"
                " could replace the server URL or the tokens kept there. Use a directory"
                " of your own that only you can write to (chmod 700 it, after checking what"
                " it holds) or set AUTHGATE_CLIENT_CONFIG_DIR to one"
            )

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock (other processes and threads wait for it); unlocked where
        there is no ``flock`` (Windows) or the lock file cannot be made (a read-only dir):
        losing the lock only risks the race it prevents, not the command."""
        self.check_directory()
        with contextlib.ExitStack() as held:
            try:
                import fcntl

                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                descriptor = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
                held.callback(os.close, descriptor)  # closing releases the lock
                fcntl.flock(descriptor, fcntl.LOCK_EX)
            except (ImportError, OSError):  # OSError: e.g. ENOLCK on some network mounts
                pass
            yield

    def save(self, url: str, token: str) -> Location:
        """Store the token for ``url``; returns where it went."""
        self.check_directory()
        url = _normal(url)
        if self._keyring_set(url, token):
            self._drop_from_file(url)  # an older copy must not outlive the new one
            return "keyring"
        tokens = self._read(self.tokens_file)
        tokens[url] = token
        self._write(self.tokens_file, tokens)
        return "file"

    def load(self, url: str) -> str | None:
        self.check_directory()
        url = _normal(url)
        token = self._keyring_get(url)
        if token:
            return token
        value = self._read(self.tokens_file).get(url)
        return value if isinstance(value, str) and value else None

    def save_pair(self, url: str, pair: StoredPair) -> Location:
        """Store a v12 token pair for ``url`` (in place of any earlier login)."""
        value = {"access_token": pair.access_token, "refresh_token": pair.refresh_token}
        return self.save(url, json.dumps(value))

    def load_pair(self, url: str) -> StoredPair | None:
        """The v12 pair stored for ``url``; None if there is none (or a v10/v11 token)."""
        value = self.load(url)
        if value is None or not value.startswith("{"):  # a JWT never starts with "{"
            return None
        try:
            data = json.loads(value)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        access, refresh = data.get("access_token"), data.get("refresh_token")
        if not (isinstance(access, str) and isinstance(refresh, str) and refresh):
            return None
        return StoredPair(access_token=access, refresh_token=refresh)

    def delete(self, url: str) -> bool:
        """Forget the token for ``url``; True if there was one."""
        self.check_directory()
        url = _normal(url)
        removed = self._keyring_delete(url)
        return self._drop_from_file(url) or removed

    def remember_url(self, url: str) -> None:
        self.check_directory()
        settings = self._read(self.settings_file)
        settings["url"] = _normal(url)
        self._write(self.settings_file, settings)

    def remembered_url(self) -> str | None:
        self.check_directory()
        url = self._read(self.settings_file).get("url")
        return url if isinstance(url, str) and url else None

    # -- keyring ----------------------------------------------------------------------------
    # Every backend failure reads as "no keyring": the caller falls back to the file.

    def _keyring_set(self, url: str, token: str) -> bool:
        if not self._use_keyring:
            return False
        try:
            import keyring

            keyring.set_password(KEYRING_SERVICE, url, token)
        except Exception:  # noqa: BLE001 - any backend failure means "unavailable"
            return False
        return True

    def _keyring_get(self, url: str) -> str | None:
        if not self._use_keyring:
            return None
        try:
            import keyring

            return keyring.get_password(KEYRING_SERVICE, url)
        except Exception:  # noqa: BLE001 - any backend failure means "unavailable"
            return None

    def _keyring_delete(self, url: str) -> bool:
        if not self._use_keyring:
            return False
        try:
            import keyring

            if keyring.get_password(KEYRING_SERVICE, url) is None:
                return False
            keyring.delete_password(KEYRING_SERVICE, url)
        except Exception:  # noqa: BLE001 - any backend failure means "unavailable"
            return False
        return True

    # -- files ------------------------------------------------------------------------------

    def _drop_from_file(self, url: str) -> bool:
        tokens = self._read(self.tokens_file)
        if url not in tokens:
            return False
        del tokens[url]
        self._write(self.tokens_file, tokens)
        return True

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        """Write ``data`` privately: a 0600 temporary file in a 0700 dir, then renamed."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.check_directory()  # again: another user may have made it just before us
        with contextlib.suppress(OSError):  # e.g. a file system without modes
            self.directory.chmod(0o700)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.unlink(missing_ok=True)  # a leftover could have wider permissions
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.replace(temporary, path)


def _normal(url: str) -> str:
    return url.rstrip("/")


def _unsafe(directory: Path) -> str | None:
    """Why another user could write to ``directory`` (None: nobody else can, it does not
    exist yet, or this is not POSIX, where modes and owners do not say that)."""
    if os.name != "posix":
        return None
    try:
        info = directory.stat()
    except OSError:  # none yet (made 0700 when written), or unreadable: fails later
        return None
    if not stat.S_ISDIR(info.st_mode):  # nothing is read from it: fails later
        return None
    if info.st_uid != os.geteuid():
        return f"belongs to another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by its group or others (mode {stat.S_IMODE(info.st_mode):04o})"
    return None
