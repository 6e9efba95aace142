"""The API key format, its checksum, and keyed hashing (``authgate.security.keys``)."""

from __future__ import annotations

import re
import zlib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from authgate.exceptions import ApiKeyInvalid
from authgate.security.keys import (
    CHECKSUM_LENGTH,
    KEY_ID_LENGTH,
    KEY_LENGTH,
    KEY_PREFIX,
    SCANNER_REGEX,
    SECRET_LENGTH,
    ParsedKey,
    display_prefix,
    generate_key,
    generate_secret_for,
    key_digest,
    looks_like_api_key,
    parse_key,
)

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PEPPER = b"pepper-one-" + bytes(range(32))
OTHER_PEPPER = b"pepper-two-" + bytes(range(32))
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiJhZG1pbiIsImV4cCI6MTcwMDAwMDAwMH0"
    ".c2lnbmF0dXJlLWJ5dGVzLWdvLWhlcmUtYW5kLWhlcmU"
)

# Where each part of ``agk_<id>_<secret><checksum>`` sits.
ID_START = len(KEY_PREFIX)
SEPARATOR = ID_START + KEY_ID_LENGTH
SECRET_START = SEPARATOR + 1
CHECKSUM_START = SECRET_START + SECRET_LENGTH
CHECKED_POSITIONS = [*range(ID_START, SEPARATOR), *range(SECRET_START, KEY_LENGTH)]
STRUCTURAL_POSITIONS = [*range(ID_START), SEPARATOR]

# A fixed key (built with the documented checksum below), so failures are reproducible.
FIXED_ID = "Zx81QmT0aB3c"
FIXED_SECRET = "4fGhJ7kLmN0pQrStUvWxYz0123456789ABCDEFabcde"


def crc32_base62(body: str) -> str:
    """The checksum as the module docstring documents it: CRC32 of everything before it,
    as 6 base62 digits, most significant first (an oracle independent of the module)."""
    number = zlib.crc32(body.encode("ascii"))
    digits = ""
    for _ in range(CHECKSUM_LENGTH):
        number, remainder = divmod(number, 62)
        digits = BASE62[remainder] + digits
    return digits


def build_key(key_id: str, secret: str) -> str:
    body = f"{KEY_PREFIX}{key_id}_{secret}"
    return body + crc32_base62(body)


FIXED_KEY = build_key(FIXED_ID, FIXED_SECRET)


def substituted(text: str, position: int, replacement: str) -> str:
    return text[:position] + replacement + text[position + 1 :]


def next_base62(char: str) -> str:
    """A deterministic, different base62 character."""
    return BASE62[(BASE62.index(char) + 1) % len(BASE62)] if char in BASE62 else "A"


def reason_of(credential: str) -> str:
    with pytest.raises(ApiKeyInvalid) as caught:
        parse_key(credential)
    return caught.value.reason


key_ids = st.text(alphabet=BASE62, min_size=KEY_ID_LENGTH, max_size=KEY_ID_LENGTH)
key_secrets = st.text(alphabet=BASE62, min_size=SECRET_LENGTH, max_size=SECRET_LENGTH)
valid_keys = st.builds(build_key, key_ids, key_secrets)


# -- generating and parsing -----------------------------------------------------------------


def test_generated_key_round_trips_through_parse_key() -> None:
    """parse_key accepts a freshly generated key and returns the same id and plaintext."""
    key = generate_key()

    parsed = parse_key(key.plaintext)

    assert parsed == key
    assert parsed.key_id == key.key_id
    assert parsed.plaintext == key.plaintext


def test_generated_key_has_the_documented_layout() -> None:
    """A generated key is agk_, a 12-char id, _, a 43-char secret and a 6-char checksum."""
    key = generate_key()
    plaintext = key.plaintext

    assert len(plaintext) == KEY_LENGTH == 66
    assert plaintext.startswith(KEY_PREFIX)
    assert plaintext[ID_START:SEPARATOR] == key.key_id
    assert len(key.key_id) == KEY_ID_LENGTH
    assert plaintext[SEPARATOR] == "_"
    assert set(plaintext[SECRET_START:]) <= set(BASE62)


def test_generated_checksum_is_crc32_of_the_body_in_base62() -> None:
    """The last 6 characters are CRC32 of everything before them, in base62."""
    plaintext = generate_key().plaintext

    assert plaintext[CHECKSUM_START:] == crc32_base62(plaintext[:CHECKSUM_START])


def test_generated_key_matches_the_scanner_regex() -> None:
    """SCANNER_REGEX finds a generated key, alone and inside surrounding text."""
    plaintext = generate_key().plaintext

    assert re.search(SCANNER_REGEX, plaintext)
    found = re.search(SCANNER_REGEX, f'export AUTHGATE_KEY="{plaintext}"\n')
    assert found is not None
    assert found.group() == plaintext


def test_two_generated_keys_differ_in_id_and_secret() -> None:
    """Two generated keys share neither their id nor their secret."""
    first, second = generate_key(), generate_key()

    assert first.key_id != second.key_id
    assert (
        first.plaintext[SECRET_START:CHECKSUM_START]
        != (second.plaintext[SECRET_START:CHECKSUM_START])
    )


def test_generate_secret_for_keeps_the_id_and_changes_the_secret() -> None:
    """Rotation keeps the key id, issues a new secret, and the new key parses."""
    original = generate_key()

    rotated = generate_secret_for(original.key_id)

    assert rotated.key_id == original.key_id
    assert rotated.plaintext[ID_START:SEPARATOR] == original.key_id
    assert (
        rotated.plaintext[SECRET_START:CHECKSUM_START]
        != (original.plaintext[SECRET_START:CHECKSUM_START])
    )
    assert parse_key(rotated.plaintext) == rotated


@given(plaintext=valid_keys)
def test_parse_key_accepts_every_well_formed_key_with_a_correct_checksum(plaintext: str) -> None:
    """Any id and secret with the documented checksum parse, keeping id and plaintext."""
    parsed = parse_key(plaintext)

    assert parsed.key_id == plaintext[ID_START:SEPARATOR]
    assert parsed.plaintext == plaintext


# -- rejection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "credential",
    [
        pytest.param("", id="empty"),
        pytest.param(JWT, id="jwt"),
        pytest.param("agx_" + FIXED_KEY[4:], id="wrong-prefix"),
        pytest.param("AGK_" + FIXED_KEY[4:], id="upper-case-prefix"),
        pytest.param("ghp_" + FIXED_KEY[4:], id="other-product-prefix"),
        pytest.param(FIXED_KEY[:-1], id="one-short"),
        pytest.param(FIXED_KEY + "0", id="one-long"),
        pytest.param(FIXED_KEY[1:], id="prefix-truncated"),
        pytest.param(FIXED_KEY + "\n", id="trailing-newline"),
        pytest.param(" " + FIXED_KEY[1:], id="leading-space"),
        pytest.param(substituted(FIXED_KEY, SECRET_START, "-"), id="dash-in-secret"),
        pytest.param(substituted(FIXED_KEY, ID_START, "+"), id="plus-in-id"),
        pytest.param(substituted(FIXED_KEY, CHECKSUM_START, "/"), id="slash-in-checksum"),
        pytest.param(substituted(FIXED_KEY, SECRET_START, "é"), id="non-ascii-letter"),
        pytest.param(substituted(FIXED_KEY, SECRET_START, "٣"), id="arabic-digit"),
        pytest.param(substituted(FIXED_KEY, SECRET_START, "\uff21"), id="fullwidth-letter"),
        pytest.param(substituted(FIXED_KEY, SEPARATOR, "A"), id="separator-replaced"),
        pytest.param(FIXED_KEY[:SEPARATOR] + FIXED_KEY[SECRET_START:] + "0", id="no-separator"),
        pytest.param("agk_" + "_" * (KEY_LENGTH - 4), id="underscores"),
    ],
)
def test_parse_key_rejects_malformed_credentials(credential: str) -> None:
    """Wrong prefix, wrong length, bad characters, a JWT or nothing: malformed_key."""
    assert reason_of(credential) == "malformed_key"


def test_parse_key_rejects_a_wrong_checksum() -> None:
    """A well-shaped key whose checksum does not match its body fails with bad_checksum."""
    wrong = FIXED_KEY[:CHECKSUM_START] + "000000"
    assert wrong != FIXED_KEY

    assert reason_of(wrong) == "bad_checksum"


def test_parse_key_rejection_is_the_generic_invalid_api_key() -> None:
    """A rejected key raises ApiKeyInvalid with the generic message, not a precise one."""
    with pytest.raises(ApiKeyInvalid) as caught:
        parse_key(FIXED_KEY[:CHECKSUM_START] + "000000")

    assert caught.value.code == "invalid_api_key"
    assert caught.value.message == "Invalid API key"
    assert FIXED_KEY not in str(caught.value)


def test_fixed_key_is_valid() -> None:
    """The reference key used by the substitution tests parses (guards the tests below)."""
    assert parse_key(FIXED_KEY).key_id == FIXED_ID


@pytest.mark.parametrize("position", CHECKED_POSITIONS)
def test_any_single_character_change_in_id_secret_or_checksum_is_a_bad_checksum(
    position: int,
) -> None:
    """Every other base62 character at any id, secret or checksum position: bad_checksum."""
    original = FIXED_KEY[position]
    for replacement in BASE62:
        if replacement == original:
            continue
        assert reason_of(substituted(FIXED_KEY, position, replacement)) == "bad_checksum", (
            f"{original!r} -> {replacement!r} at {position}"
        )


@pytest.mark.parametrize("position", STRUCTURAL_POSITIONS)
def test_any_change_to_the_prefix_or_separator_is_malformed(position: int) -> None:
    """Any base62 character in place of the agk_ prefix or the _ separator: malformed_key."""
    for replacement in BASE62:
        if replacement == FIXED_KEY[position]:
            continue
        assert reason_of(substituted(FIXED_KEY, position, replacement)) == "malformed_key"


@given(plaintext=valid_keys, position=st.sampled_from(CHECKED_POSITIONS), data=st.data())
def test_single_character_substitution_is_always_caught(
    plaintext: str, position: int, data: st.DataObject
) -> None:
    """For any valid key, changing one id/secret/checksum character to another base62
    character is refused: CRC32 detects every error confined to one byte."""
    replacement = data.draw(st.sampled_from(BASE62).filter(lambda c: c != plaintext[position]))

    assert reason_of(substituted(plaintext, position, replacement)) == "bad_checksum"


@given(plaintext=valid_keys)
def test_swapping_two_adjacent_different_characters_is_caught(plaintext: str) -> None:
    """Transposing the first two different adjacent secret characters is refused."""
    secret = plaintext[SECRET_START:CHECKSUM_START]
    for index in range(len(secret) - 1):
        if secret[index] != secret[index + 1]:
            at = SECRET_START + index
            swapped = plaintext[:at] + plaintext[at + 1] + plaintext[at] + plaintext[at + 2 :]
            assert reason_of(swapped) == "bad_checksum"
            return


@given(
    credential=st.one_of(
        st.text(),
        st.text(min_size=KEY_LENGTH, max_size=KEY_LENGTH),
        st.text(alphabet=BASE62 + "_", min_size=KEY_LENGTH, max_size=KEY_LENGTH),
        st.from_regex(r"agk_[0-9A-Za-z]{12}_[0-9A-Za-z]{49}", fullmatch=True),
        valid_keys,
    )
)
@example(credential="")
@example(credential="\udcff" * KEY_LENGTH)  # lone surrogates: not encodable as ASCII
@example(credential="agk_" + "\x00" * (KEY_LENGTH - 4))
@example(credential=FIXED_KEY)
def test_parse_key_raises_only_api_key_invalid_for_any_text(credential: str) -> None:
    """parse_key either returns a ParsedKey for exactly the input or raises ApiKeyInvalid."""
    try:
        parsed = parse_key(credential)
    except ApiKeyInvalid as error:
        reason = error.reason
    else:
        assert isinstance(parsed, ParsedKey)
        assert parsed.plaintext == credential
        assert parsed.key_id == credential[ID_START:SEPARATOR]
        return
    assert reason in {"malformed_key", "bad_checksum"}


# -- hashing --------------------------------------------------------------------------------


def test_key_digest_is_deterministic_for_a_pepper() -> None:
    """The same key under the same pepper always gives the same digest."""
    assert key_digest(PEPPER, FIXED_KEY) == key_digest(PEPPER, FIXED_KEY)


def test_key_digest_differs_across_peppers() -> None:
    """The same key under another pepper gives another digest."""
    assert key_digest(PEPPER, FIXED_KEY) != key_digest(OTHER_PEPPER, FIXED_KEY)


def test_key_digest_differs_across_keys() -> None:
    """Two different keys under the same pepper give different digests."""
    other = generate_key().plaintext

    assert key_digest(PEPPER, FIXED_KEY) != key_digest(PEPPER, other)


def test_key_digest_is_hmac_sha256_in_64_lower_case_hex_characters() -> None:
    """A digest is 64 lower-case hex characters (HMAC-SHA256)."""
    assert re.fullmatch(r"[0-9a-f]{64}", key_digest(PEPPER, FIXED_KEY))


def test_key_digest_never_contains_the_key_or_its_secret() -> None:
    """Neither the key nor its id or secret appear in the stored digest."""
    digest = key_digest(PEPPER, FIXED_KEY)

    assert FIXED_KEY not in digest
    assert FIXED_SECRET not in digest
    assert FIXED_ID not in digest


# -- display and recognition ----------------------------------------------------------------


def test_display_prefix_shows_the_id_and_the_last_four_characters() -> None:
    """The masked form is agk_<id>_… followed by the key's last 4 characters."""
    shown = display_prefix(FIXED_ID, FIXED_KEY)

    assert shown == f"agk_{FIXED_ID}_…{FIXED_KEY[-4:]}"


def test_display_prefix_does_not_show_the_secret() -> None:
    """The masked form holds no secret character: its tail lies inside the checksum."""
    key = generate_key()
    secret = key.plaintext[SECRET_START:CHECKSUM_START]

    shown = display_prefix(key.key_id, key.plaintext)

    assert secret not in shown
    assert shown.endswith(key.plaintext[CHECKSUM_START:][-4:])
    assert len(shown) == len(KEY_PREFIX) + KEY_ID_LENGTH + 1 + 1 + 4
    assert key.plaintext not in shown


@pytest.mark.parametrize(
    "credential",
    # a fixed id for the generated key: pytest-xdist workers must collect the same names
    [FIXED_KEY, pytest.param(generate_key().plaintext, id="generated"), "agk_"],
)
def test_looks_like_api_key_recognises_keys(credential: str) -> None:
    """Anything starting with agk_ is routed to key authentication."""
    assert looks_like_api_key(credential) is True


@pytest.mark.parametrize("credential", [JWT, "eyJ", "", "Agk_" + FIXED_KEY[4:], "bearer"])
def test_looks_like_api_key_rejects_jwts_and_other_text(credential: str) -> None:
    """A JWT (eyJ...) or other text is not taken for an API key."""
    assert looks_like_api_key(credential) is False


def test_parsed_key_repr_has_no_secret() -> None:
    """repr and str of a ParsedKey show the id but never the plaintext or the secret."""
    key = generate_key()
    secret = key.plaintext[SECRET_START:CHECKSUM_START]

    for shown in (repr(key), str(key), f"{key!r}", f"{[key]}"):
        assert key.key_id in shown
        assert secret not in shown
        assert key.plaintext not in shown
