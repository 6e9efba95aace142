"""Signing-key files: read, create once, rotate. Files are written atomically with mode 0600."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import stat
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
    temporary = _write_temporary(path, data)
    try:
        # A new file: its directory's owner's if this user can give it (root); else
        # this user's own (a group-writable directory, as OpenShift's random users get).
        with contextlib.suppress(ConfigurationError):
            _keep_owner(path.parent, temporary)
        os.link(temporary, path)  # fails with FileExistsError if another process was first
    finally:
        temporary.unlink()


def _replace(path: Path, ring: KeyRing) -> None:
    # A symlink (to a copy shared by several nodes) is followed: the file it names is
    # replaced, not the link by a file of this node's own.
    path = path.resolve()
    data = json.dumps(keyring_to_document(ring), indent=2).encode("utf-8")
    temporary = _write_temporary(path, data)
    try:
        _keep_owner(path, temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _keep_owner(source: Path, temporary: Path) -> None:
    """Give ``temporary`` the owner of ``source`` (the file it replaces, or the directory
    a new file goes to): the servers read the file as that user (a systemd
    ``DynamicUser``, a container's), and a file written by root's ``authgate
    signing-keys rotate`` would be unreadable to them (the running ones keep the old
    key, the next start fails). Refused when this user cannot give it its owner; a
    group it cannot give is left (the file is 0600: its group reads nothing)."""
    try:
        owner = source.stat()
    except FileNotFoundError:
        return
    made = temporary.stat()
    if made.st_uid != owner.st_uid:
        try:
            os.chown(temporary, owner.st_uid, owner.st_gid)
        except PermissionError:
            raise ConfigurationError(
                f"{source} belongs to user id {owner.st_uid}, the user the servers read "
                "it as: run this command as that user (or as root)"
            ) from None
    elif made.st_gid != owner.st_gid:
        with contextlib.suppress(PermissionError):
            os.chown(temporary, -1, owner.st_gid)


def _write_temporary(path: Path, data: bytes) -> Path:
    """Write ``data`` beside ``path`` (mode 0600, fsynced) and return the temporary path."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return temporary


def _warn_if_readable_by_others(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret file %s is accessible by other users; chmod 600 it", path)
