"""The keys review reads the live keys with their owners' logins in one joined query,
paged by id in the database (issue 11): hundreds of keys of many users give the same
sections and owners as the keys created say, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from authgate.services import api_keys
from authgate.services.api_key_views import KeySpec
from tests.conftest import Harness

USERS = 30
KEYS_PER_USER = 10


async def test_review_of_many_keys_across_pages(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 keys of 30 users, read 7 at a time (pages end mid-user): every live key is
    listed where its attributes say, revoked ones nowhere, every owner by login."""
    monkeypatch.setattr(api_keys, "REVIEW_PAGE", 7)
    service = harness.services.api_keys
    now = harness.clock()
    expected: dict[str, set[str]] = {"unrestricted": set(), "expiring": set(), "broad": set()}
    owners: dict[int, str] = {}
    for number in range(USERS):
        login = f"owner{number:02d}"
        user_id = await harness.create_user(login)
        for index in range(KEYS_PER_USER):
            at = number * KEYS_PER_USER + index
            name = f"{login}-key{index}"
            created = await service.create(
                user_id,
                KeySpec(
                    name=name,
                    allowed_networks=[] if at % 2 == 0 else ["10.0.0.0/8"],
                    expires_at=now + timedelta(days=3 if at % 3 == 0 else 60),
                    scopes=frozenset({"read", "write"} if at % 5 == 0 else {"read"}),
                ),
            )
            if at % 7 == 0 or number == USERS - 1:  # the last user has no live key
                await service.revoke(None, created.view.key_pk)
                continue
            owners[user_id] = login
            if at % 2 == 0:
                expected["unrestricted"].add(name)
            if at % 3 == 0:
                expected["expiring"].add(name)
            if at % 5 == 0:
                expected["broad"].add(name)

    review = await service.review(unused_days=1, expiring_days=14)

    assert {key.name for key in review.unrestricted} == expected["unrestricted"]
    assert {key.name for key in review.expiring} == expected["expiring"]
    assert {key.name for key in review.broad_scopes} == expected["broad"]
    assert review.unused == []  # all created just now
    assert review.legacy == []
    assert review.beyond_expiry_policy == []
    assert review.owner_logins == owners
    for section in (review.unrestricted, review.expiring, review.broad_scopes):
        ids = [key.key_pk for key in section]
        assert ids == sorted(ids)  # oldest first, as one query in id order gave them
        assert len(ids) == len(set(ids))
        for key in section:
            assert review.owner_logins[key.owner_id] == key.name.partition("-")[0]


async def test_each_section_lists_its_first_keys_and_counts_them_all(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``limit`` a section keeps its oldest keys and counts the others; an owner
    none of whose keys is listed is not among the owners (memory bounded by the lists,
    not by the number of keys)."""
    monkeypatch.setattr(api_keys, "REVIEW_PAGE", 4)
    service = harness.services.api_keys
    now = harness.clock()
    created = []
    for number in range(3):
        user_id = await harness.create_user(f"limited{number}")
        for index in range(4):
            spec = KeySpec(
                name=f"k{index}",
                allowed_networks=[] if index % 2 == 0 else ["10.0.0.0/8"],
                expires_at=now + timedelta(days=30),
                scopes=frozenset({"read"}),
            )
            created.append((await service.create(user_id, spec)).view)

    review = await service.review(unused_days=1, expiring_days=60, limit=5)

    assert [key.key_pk for key in review.expiring] == [key.key_pk for key in created[:5]]
    open_keys = [key.key_pk for key in created if not key.allowed_networks]
    assert [key.key_pk for key in review.unrestricted] == open_keys[:5]
    assert review.counts == {
        "unused": 0,
        "unrestricted": 6,
        "expiring": 12,
        "broad_scopes": 0,
        "legacy": 0,
        "beyond_expiry_policy": 0,
    }
    assert set(review.owner_logins.values()) == {"limited0", "limited1", "limited2"}
    assert review.limit == 5

    first_owner_only = await service.review(unused_days=1, expiring_days=60, limit=2)
    assert set(first_owner_only.owner_logins.values()) == {"limited0"}
