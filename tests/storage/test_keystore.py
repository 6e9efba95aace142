"""Signing-key files (``authgate.storage.keystore``): create once, load, rotate, HS512 secrets."""

from __future__ import annotations

import base64
import json
import logging
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from authgate.exceptions import ConfigurationError
from authgate.security.signing_keys import (
    AsymmetricAlgorithm,
    KeyRing,
    SigningKey,
    generate_signing_key,
    keyring_to_document,
)
from authgate.security.tokens import JwtCodec
from authgate.storage import keystore
from authgate.storage.keystore import (
    hmac_keyring,
    load_keyring,
    load_or_create_keyring,
    rotate_keyring,
)

NOW = datetime.now(UTC).replace(microsecond=0)
KEEP_FOR = timedelta(days=7)
SECRET_64 = bytes(range(64))


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "data" / "signing-keys.json"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_ring(path: Path, ring: KeyRing) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(keyring_to_document(ring)), encoding="utf-8")
    path.chmod(0o600)


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def codec(ring: KeyRing) -> JwtCodec:
    return JwtCodec(ring, issuer="authgate", audience="authgate", leeway=timedelta(seconds=30))


# -- create once ----------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_creates_the_key_file_with_mode_0600(
    key_file: Path, algorithm: AsymmetricAlgorithm
) -> None:
    """A missing key file is created (with its directory), readable by the owner only."""
    ring = load_or_create_keyring(key_file, algorithm, now=NOW)

    assert key_file.is_file()
    assert mode_of(key_file) == 0o600
    assert ring.active.algorithm == algorithm
    assert len(ring.keys) == 1


def test_creates_a_missing_key_directory_private(key_file: Path) -> None:
    """The key file's missing directory is created accessible by the owner only."""
    load_or_create_keyring(key_file, "ES256", now=NOW)

    assert mode_of(key_file.parent) & 0o077 == 0


def test_created_file_holds_the_returned_key(key_file: Path) -> None:
    """The file written on creation contains exactly the key that was returned."""
    ring = load_or_create_keyring(key_file, "ES256", now=NOW)

    document = json.loads(key_file.read_text(encoding="utf-8"))

    assert [entry["kid"] for entry in document["keys"]] == [ring.active.kid]
    assert load_keyring(key_file).active.kid == ring.active.kid


def test_creation_leaves_no_temporary_file(key_file: Path) -> None:
    """After creation only the key file is in its directory."""
    load_or_create_keyring(key_file, "ES256", now=NOW)

    assert leftovers(key_file) == []


def test_second_call_returns_the_same_key(key_file: Path) -> None:
    """Calling load_or_create_keyring again loads the created key instead of making another."""
    first = load_or_create_keyring(key_file, "ES256", now=NOW)
    content = key_file.read_bytes()

    second = load_or_create_keyring(key_file, "ES256", now=NOW + timedelta(days=1))

    assert second.active.kid == first.active.kid
    assert key_file.read_bytes() == content


def test_tokens_survive_a_restart(key_file: Path) -> None:
    """A token signed with the created ring verifies with the ring loaded on the next start."""
    token = codec(load_or_create_keyring(key_file, "EdDSA", now=NOW)).issue(
        subject="alice", user_id=1, authorities=frozenset(), now=NOW, ttl=timedelta(hours=1)
    )

    reloaded = load_or_create_keyring(key_file, "EdDSA", now=NOW)

    assert codec(reloaded).verify(token.token, now=NOW).subject == "alice"


def test_existing_file_is_loaded_not_overwritten(key_file: Path) -> None:
    """An existing key file is read as it is; its bytes stay unchanged."""
    existing = KeyRing([generate_signing_key("ES256", now=NOW)])
    write_ring(key_file, existing)
    content = key_file.read_bytes()

    ring = load_or_create_keyring(key_file, "ES256", now=NOW)

    assert ring.active.kid == existing.active.kid
    assert key_file.read_bytes() == content


def test_a_concurrent_creator_wins_and_its_key_is_used(
    key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When another process creates the file first, its key is used and the file kept."""
    theirs = KeyRing([generate_signing_key("ES256", now=NOW)])
    real_generate = generate_signing_key

    def generate_while_another_process_writes(
        algorithm: AsymmetricAlgorithm, *, now: datetime
    ) -> SigningKey:
        write_ring(key_file, theirs)  # lands after our exists() check, before our link
        return real_generate(algorithm, now=now)

    monkeypatch.setattr(keystore, "generate_signing_key", generate_while_another_process_writes)

    ring = load_or_create_keyring(key_file, "ES256", now=NOW)

    assert ring.active.kid == theirs.active.kid
    assert load_keyring(key_file).active.kid == theirs.active.kid
    assert leftovers(key_file) == []


# -- load -----------------------------------------------------------------------------------


def test_load_of_a_missing_file_raises_configuration_error(key_file: Path) -> None:
    """load_keyring on a path that does not exist raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match="not found"):
        load_keyring(key_file)


def test_load_of_a_directory_raises_configuration_error(tmp_path: Path) -> None:
    """A path that cannot be read as a file raises ConfigurationError."""
    with pytest.raises(ConfigurationError):
        load_keyring(tmp_path)


@pytest.mark.parametrize(
    "content",
    ["", "{", "not json", '{"version": 1, "keys": [}', "\x00\x01"],
    ids=["empty", "open-brace", "text", "broken", "binary"],
)
def test_invalid_json_raises_configuration_error(key_file: Path, content: str) -> None:
    """A key file that is not valid JSON raises ConfigurationError."""
    key_file.parent.mkdir(parents=True)
    key_file.write_text(content, encoding="utf-8")

    with pytest.raises(ConfigurationError):
        load_keyring(key_file)


@pytest.mark.parametrize(
    "content",
    [
        "[]",
        "null",
        "42",
        '"keys"',
        "{}",
        '{"version": 2, "keys": []}',
        '{"version": 1}',
        '{"version": 1, "keys": {}}',
        '{"version": 1, "keys": []}',
        '{"version": 1, "keys": [{}]}',
        '{"version": 1, "keys": [{"kid": "x", "alg": "ES256"}]}',
    ],
    ids=[
        "list",
        "null",
        "number",
        "string",
        "empty-object",
        "version-2",
        "no-keys",
        "keys-object",
        "no-key",
        "empty-entry",
        "entry-without-pem",
    ],
)
def test_wrong_structure_raises_configuration_error(key_file: Path, content: str) -> None:
    """Valid JSON that is not a key ring document raises ConfigurationError."""
    key_file.parent.mkdir(parents=True)
    key_file.write_text(content, encoding="utf-8")

    with pytest.raises(ConfigurationError):
        load_keyring(key_file)


def test_invalid_existing_file_is_reported_not_replaced(key_file: Path) -> None:
    """load_or_create_keyring raises on a corrupt file and leaves it for the operator."""
    key_file.parent.mkdir(parents=True)
    key_file.write_text("{corrupt", encoding="utf-8")

    with pytest.raises(ConfigurationError):
        load_or_create_keyring(key_file, "ES256", now=NOW)

    assert key_file.read_text(encoding="utf-8") == "{corrupt"


def test_loading_a_file_readable_by_others_logs_a_warning(
    key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A key file with group/other permissions still loads, with a warning to chmod it."""
    write_ring(key_file, KeyRing([generate_signing_key("ES256", now=NOW)]))
    key_file.chmod(0o644)

    with caplog.at_level(logging.WARNING, logger="authgate.storage.keystore"):
        load_keyring(key_file)

    assert any("chmod 600" in record.getMessage() for record in caplog.records)


def test_loading_a_private_file_logs_no_warning(
    key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 0600 key file loads without a permission warning."""
    write_ring(key_file, KeyRing([generate_signing_key("ES256", now=NOW)]))

    with caplog.at_level(logging.WARNING, logger="authgate.storage.keystore"):
        load_keyring(key_file)

    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- rotate ---------------------------------------------------------------------------------


def test_rotate_adds_an_active_key_and_retires_the_old_one(key_file: Path) -> None:
    """rotate_keyring makes a new key active and keeps the old one, retired at now."""
    old = load_or_create_keyring(key_file, "ES256", now=NOW)
    later = NOW + timedelta(days=30)

    ring = rotate_keyring(key_file, "ES256", now=later, keep_for=KEEP_FOR)

    assert ring.active.kid != old.active.kid
    assert [key.kid for key in ring.keys] == [ring.active.kid, old.active.kid]
    assert ring.keys[1].retired_at == later


def test_rotation_is_written_to_the_file(key_file: Path) -> None:
    """After rotation the file holds the rotated ring, still with mode 0600 and no leftovers."""
    old = load_or_create_keyring(key_file, "ES256", now=NOW)

    ring = rotate_keyring(key_file, "EdDSA", now=NOW, keep_for=KEEP_FOR)
    loaded = load_keyring(key_file)

    assert [(k.kid, k.algorithm, k.retired_at) for k in loaded.keys] == [
        (ring.active.kid, "EdDSA", None),
        (old.active.kid, "ES256", NOW),
    ]
    assert mode_of(key_file) == 0o600
    assert leftovers(key_file) == []


def test_tokens_of_the_old_key_verify_after_rotation(key_file: Path) -> None:
    """A token signed before rotate_keyring verifies with the rotated file's ring."""
    token = codec(load_or_create_keyring(key_file, "ES256", now=NOW)).issue(
        subject="alice", user_id=1, authorities=frozenset(), now=NOW, ttl=timedelta(hours=1)
    )

    rotate_keyring(key_file, "ES256", now=NOW + timedelta(minutes=5), keep_for=KEEP_FOR)

    assert codec(load_keyring(key_file)).verify(token.token, now=NOW).user_id == 1


def test_rotation_drops_keys_retired_longer_than_keep_for(key_file: Path) -> None:
    """A key retired more than keep_for before the next rotation is removed from the file."""
    first = load_or_create_keyring(key_file, "ES256", now=NOW)
    second = rotate_keyring(key_file, "ES256", now=NOW, keep_for=KEEP_FOR)

    third = rotate_keyring(
        key_file, "ES256", now=NOW + KEEP_FOR + timedelta(seconds=1), keep_for=KEEP_FOR
    )

    kids = [key.kid for key in load_keyring(key_file).keys]
    assert kids == [third.active.kid, second.active.kid]
    assert first.active.kid not in kids


def test_rotate_without_a_key_file_raises_configuration_error(key_file: Path) -> None:
    """rotate_keyring needs an existing file and does not create one."""
    with pytest.raises(ConfigurationError):
        rotate_keyring(key_file, "ES256", now=NOW, keep_for=KEEP_FOR)

    assert not key_file.exists()


# -- HS512 shared secret --------------------------------------------------------------------


def test_hmac_keyring_from_a_base64_secret() -> None:
    """A base64 secret of 64 bytes gives an HS512 ring whose key is that secret."""
    ring = hmac_keyring(base64.b64encode(SECRET_64).decode(), None, now=NOW)

    assert ring.active.algorithm == "HS512"
    assert ring.active.private == SECRET_64


@pytest.mark.parametrize(
    "secret",
    [
        "not base64!",
        base64.urlsafe_b64encode(b"\xfb\xff" * 40).decode(),  # base64url alphabet (-, _)
        base64.b64encode(SECRET_64).decode()[:-1],  # bad padding
        "é" * 88,
    ],
    ids=["punctuation", "urlsafe-alphabet", "bad-padding", "non-ascii"],
)
def test_hmac_keyring_rejects_a_secret_that_is_not_base64(secret: str) -> None:
    """A secret that is not standard base64 raises ConfigurationError."""
    with pytest.raises(ConfigurationError, match="base64"):
        hmac_keyring(secret, None, now=NOW)


def test_hmac_keyring_rejects_a_short_secret() -> None:
    """A secret of 63 bytes after decoding raises ConfigurationError."""
    with pytest.raises(ConfigurationError, match="64 bytes"):
        hmac_keyring(base64.b64encode(SECRET_64[:63]).decode(), None, now=NOW)


@pytest.mark.parametrize("secret", [None, ""], ids=["none", "empty"])
def test_hmac_keyring_without_a_secret_raises_configuration_error(secret: str | None) -> None:
    """Neither a secret nor a secret file raises ConfigurationError."""
    with pytest.raises(ConfigurationError):
        hmac_keyring(secret, None, now=NOW)


def test_hmac_keyring_reads_the_secret_from_a_file(tmp_path: Path) -> None:
    """A secret file (with a trailing newline) gives the same key as the secret itself."""
    encoded = base64.b64encode(SECRET_64).decode()
    secret_file = tmp_path / "jwt-secret"
    secret_file.write_text(encoded + "\n", encoding="utf-8")

    from_file = hmac_keyring(None, secret_file, now=NOW)

    assert from_file.active.private == SECRET_64
    assert from_file.active.kid == hmac_keyring(encoded, None, now=NOW).active.kid


def test_hmac_keyring_rejects_a_short_secret_from_a_file(tmp_path: Path) -> None:
    """A too-short secret in a file raises ConfigurationError like a direct one."""
    secret_file = tmp_path / "jwt-secret"
    secret_file.write_text(base64.b64encode(b"short").decode(), encoding="utf-8")

    with pytest.raises(ConfigurationError):
        hmac_keyring(None, secret_file, now=NOW)


@pytest.mark.parametrize("content", ["", "\n"], ids=["empty", "newline"])
def test_hmac_keyring_rejects_an_empty_secret_file(tmp_path: Path, content: str) -> None:
    """An empty secret file raises ConfigurationError."""
    secret_file = tmp_path / "jwt-secret"
    secret_file.write_text(content, encoding="utf-8")

    with pytest.raises(ConfigurationError):
        hmac_keyring(None, secret_file, now=NOW)


def test_hmac_keyring_with_a_missing_file_raises_configuration_error(tmp_path: Path) -> None:
    """An unreadable secret file raises ConfigurationError."""
    with pytest.raises(ConfigurationError, match="secret file"):
        hmac_keyring(None, tmp_path / "missing", now=NOW)
