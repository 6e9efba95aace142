"""Signing-key files: read, create once, rotate. Files are written atomically with mode 0600."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import stat
import tempfile
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from authgate.exceptions import ConfigurationError
from authgate.security.signing_keys import (
    AsymmetricAlgorithm,
    KeyRing,
    generate_signing_key,
    hmac_signing_key,
    keyring_from_document,
    keyring_to_document,
)

log = logging.getLogger(__name__)


def load_keyring(path: Path) -> KeyRing:
    """Read an existing key file; raises ``ConfigurationError`` when missing or invalid."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"signing key file not found: {path}") from None
    except OSError as error:
        raise ConfigurationError(f"cannot read signing key file {path}: {error.strerror}") from None
    _warn_if_readable_by_others(path)
    try:
        document = json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigurationError(f"signing key file {path} is not valid JSON") from None
    if not isinstance(document, dict):
        raise ConfigurationError(f"signing key file {path} is not a JSON object")
    return keyring_from_document(document)


def load_or_create_keyring(path: Path, algorithm: AsymmetricAlgorithm, *, now: datetime) -> KeyRing:
    """The key ring in ``path``, created with one fresh key if the file does not exist.

    Creation uses an exclusive open, so processes starting together agree on one key.
    """
    if not path.exists():
        ring = KeyRing([generate_signing_key(algorithm, now=now)])
        try:
            _write_new(path, ring)
            log.info("created a new %s signing key in %s", algorithm, path)
            return ring
        except FileExistsError:
            pass  # another process won the race; use its key
    return load_keyring(path)


def rotate_keyring(
    path: Path,
    algorithm: AsymmetricAlgorithm,
    *,
    now: datetime,
    keep_for: timedelta,
    stage: bool = False,
) -> KeyRing:
    """Make a new key active in the file (the staged one, if a key is staged); old keys
    keep verifying for ``keep_for``. With ``stage``, add a new key that verifies but
    signs only from the next rotation."""
    current = load_keyring(path)
    if stage:
        staged = current.staged_key
        if staged is not None:
            # Another node may sign with it already (its copy was rotated): dropping it
            # would make this copy refuse that node's tokens.
            raise ConfigurationError(
                f"key {staged.kid} is staged already: `authgate signing-keys rotate` "
                "makes it active (once every node has this file), then stage the next"
            )
        ring = current.with_staged(generate_signing_key(algorithm, now=now))
    else:
        staged = current.staged_key
        new = replace(staged, staged=False) if staged else generate_signing_key(algorithm, now=now)
        ring = current.rotated(new, now=now, keep_for=keep_for)
    _replace(path, ring)
    return ring


def hmac_keyring(secret: str | None, secret_file: Path | None, *, now: datetime) -> KeyRing:
    """The HS512 ring from a base64 secret given directly or in a file."""
    if secret_file is not None:
        try:
            secret = secret_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigurationError(f"cannot read JWT secret file: {error.strerror}") from None
    if not secret:
        raise ConfigurationError("HS512 needs AUTHGATE_JWT_SECRET or AUTHGATE_JWT_SECRET_FILE")
    try:
        raw = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError("the JWT secret must be base64-encoded") from None
    return KeyRing([hmac_signing_key(raw, now=now)])


def load_or_create_pepper(
    secret: str | None, secret_file: Path | None, default_file: Path
) -> bytes:
    """The API-key pepper: given (base64) or in a file, else generated once into
    ``default_file`` (mode 0600). Every node of a cluster must use the same one."""
    return _load_or_create_secret("API key pepper", secret, secret_file, default_file)


def load_or_create_audit_key(
    secret: str | None, secret_file: Path | None, default_file: Path
) -> bytes:
    """The audit key (keys the audit chain): given (base64) or in a file, else generated
    once into ``default_file`` (mode 0600). A secret of its own, never derived from
    anything in the database; every node of a cluster must use the same one."""
    return _load_or_create_secret("audit key", secret, secret_file, default_file)


def load_or_create_tfa_key(
    secret: str | None, secret_file: Path | None, default_file: Path
) -> bytes:
    """The second-factor key (encrypts TOTP secrets, keys one-time code hashes): given
    (base64) or in a file, else generated once into ``default_file`` (mode 0600). Kept
    outside the database; every node of a cluster must use the same one."""
    return _load_or_create_secret("second-factor key", secret, secret_file, default_file)


def create_pepper_file(path: Path) -> None:
    """A new random pepper (32 bytes, base64) in a new file of mode 0600."""
    create_secret_file(path)


def create_secret_file(path: Path) -> None:
    """A new random secret (32 bytes, base64) in a new file of mode 0600."""
    _write_new_bytes(path, base64.b64encode(os.urandom(32)))


def _load_or_create_secret(
    what: str, secret: str | None, secret_file: Path | None, default_file: Path
) -> bytes:
    if secret is None:
        path = secret_file or default_file
        if secret_file is None and not path.exists():
            try:
                create_secret_file(path)
                log.info("created a new %s in %s", what, path)
            except FileExistsError:
                pass  # another process created it first
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigurationError(f"cannot read the {what}: {error.strerror}") from None
        _warn_if_readable_by_others(path)
    try:
        value = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"the {what} must be base64-encoded") from None
    if len(value) < 32:
        raise ConfigurationError(f"the {what} must be at least 32 bytes")
    return value


def _write_new(path: Path, ring: KeyRing) -> None:
    _write_new_bytes(path, json.dumps(keyring_to_document(ring), indent=2).encode("utf-8"))


def _write_new_bytes(path: Path, data: bytes) -> None:
    # A new file: its directory's owner's if this user can give it (root); else this
    # user's own (a group-writable directory, as OpenShift's random users get).
    temporary = _write_temporary(path, data, owner_of=path.parent, strict=False)
    try:
        os.link(temporary, path)  # fails with FileExistsError if another process was first
    finally:
        temporary.unlink()


def _replace(path: Path, ring: KeyRing) -> None:
    """Replace the file at ``path`` (a symlink there is replaced itself, never followed:
    root's rotation must not write where a link planted by another user points)."""
    data = json.dumps(keyring_to_document(ring), indent=2).encode("utf-8")
    temporary = _write_temporary(path, data, owner_of=path, strict=True)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _write_temporary(path: Path, data: bytes, *, owner_of: Path, strict: bool) -> Path:
    """Write ``data`` beside ``path`` (mode 0600, fsynced) and return the temporary path.

    The temporary file has a random name and is created exclusively (``mkstemp``), and
    its owner is set through its descriptor: a name another user of the directory could
    guess, or a symlink planted there, would have had root write or chown their target.
    Its owner is ``owner_of``'s (the file it replaces, or the directory a new one goes
    to): the servers read the file as that user (a systemd ``DynamicUser``, a
    container's), and a file written by root's ``authgate signing-keys rotate`` would be
    unreadable to them (the running ones keep the old key, the next start fails). A user
    who cannot give it that owner is refused (``strict``) or keeps it; a group it cannot
    give is left (the file is 0600: its group reads nothing)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            _keep_owner(owner_of, handle.fileno(), strict=strict)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _keep_owner(source: Path, fd: int, *, strict: bool) -> None:
    try:
        owner = source.stat()
    except FileNotFoundError:
        return
    made = os.fstat(fd)
    if made.st_uid != owner.st_uid:
        try:
            os.fchown(fd, owner.st_uid, owner.st_gid)
        except PermissionError:
            if strict:
                raise ConfigurationError(
                    f"{source} belongs to user id {owner.st_uid}, the user the servers "
                    "read it as: run this command as that user (or as root)"
                ) from None
    elif made.st_gid != owner.st_gid:
        with contextlib.suppress(PermissionError):
            os.fchown(fd, -1, owner.st_gid)


def _warn_if_readable_by_others(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret file %s is accessible by other users; chmod 600 it", path)
