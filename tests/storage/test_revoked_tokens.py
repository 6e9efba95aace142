"""The deny list's table: denying a token is an insert-if-absent, and a broken constraint
reaches the services (and any log) without the row's values."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from authgate.storage.db import Database
from authgate.storage.errors import Conflict
from authgate.storage.models import RevokedToken, User

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
JTI = "jti-9f8e7d6c5b4a39281706"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    try:
        async with database.transaction() as session:
            session.add(
                User(
                    login="alice",
                    email="alice@example.com",
                    password_hash="x",
                    authorities="ROLE_USER",
                    activated=True,
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
        yield database
    finally:
        await database.close()


async def user_id(db: Database) -> int:
    async with db.session() as session:
        user = await db.users(session).by_login("alice")
    assert user is not None
    return user.id


async def test_denying_one_token_at_once_gives_one_true_and_no_error(db: Database) -> None:
    """Ten requests denying one token at once: one True, nine False, no Conflict (a
    read-then-insert broke revoked_tokens' key: a 500)."""
    owner = await user_id(db)

    async def deny() -> bool:
        async with db.transaction() as session:
            return await db.revoked_tokens(session).add(
                jti=JTI, user_id=owner, expires_at=NOW + timedelta(minutes=5), revoked_at=NOW
            )

    results = await asyncio.gather(*(deny() for _ in range(10)))
    assert sorted(results) == [False] * 9 + [True]
    async with db.transaction() as session:
        await db.revoked_tokens(session).remove(JTI)
    assert await deny() is True


async def test_a_broken_constraint_is_logged_without_the_rows_values(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL's message says ``DETAIL: Key (jti)=(<the token id>) already exists``;
    ``hide_parameters`` does not hide it, and a Conflict chained to it printed it with
    the traceback of the 500 it became. The Conflict names the constraint, not values."""
    owner = await user_id(db)
    row = {"user_id": owner, "expires_at": NOW + timedelta(minutes=5), "revoked_at": NOW}
    async with db.transaction() as session:
        session.add(RevokedToken(jti=JTI, **row))
    with pytest.raises(Conflict) as raised:
        async with db.transaction() as session:
            session.add(RevokedToken(jti=JTI, **row))
    printed = "".join(traceback.format_exception(raised.value))
    logging.getLogger("authgate.test").error("unexpected", exc_info=raised.value)
    for text in (printed, caplog.text):
        assert JTI not in text
        assert "DETAIL" not in text
        assert "Key (" not in text
    if db.dialect == "postgresql":
        assert str(raised.value).endswith("(pk_revoked_tokens)"), str(raised.value)
