"""Cluster membership in-process: the pepper fingerprint, the node registry and the
checks between nodes (several app instances on one database stand in for nodes)."""

from __future__ import annotations

import base64
import os
from datetime import timedelta
from pathlib import Path

import pytest

from authgate.container import build_services
from authgate.exceptions import ConfigurationError
from authgate.runtime import BackgroundWork
from authgate.services.api_key_views import KeySpec
from authgate.services.cluster import LIVE_WINDOW, ClusterMembership, pepper_fingerprint
from authgate.settings import Settings
from authgate.storage import migrate
from authgate.storage.cluster_repository import ClusterRepository
from authgate.storage.models import ClusterNode, OneTimeCode
from tests.conftest import FakeClock, test_settings


def pepper() -> str:
    return base64.b64encode(os.urandom(32)).decode()


# The audit and second-factor keys every node of these tests shares (unless a test
# gives one its own).
SHARED_AUDIT_KEY = pepper()
SHARED_TFA_KEY = pepper()


def node_settings(base: Settings, tmp_path: Path, name: str, **overrides: object) -> Settings:
    """Another node: its own data dir, the same database (and the shared audit and
    second-factor keys)."""
    overrides.setdefault("audit_key", SHARED_AUDIT_KEY)
    overrides.setdefault("tfa_key", SHARED_TFA_KEY)
    return test_settings(
        tmp_path / name,
        database_url=base.effective_database_url,
        **overrides,
    )


async def started(settings: Settings, clock: FakeClock) -> BackgroundWork:
    services = build_services(settings, clock=clock)
    await migrate.upgrade(services.db.engine)
    work = BackgroundWork(services)
    try:
        # As a server: it joins (and adopts its secrets while nothing depends on them)
        # before anything else; start(background=False) is a CLI command's start.
        assert services.cluster is not None
        await services.cluster.join()
        await work.start(background=False)
    except BaseException:
        await work.close()
        raise
    return work


def membership(work: BackgroundWork) -> ClusterMembership:
    assert work.services.cluster is not None
    return work.services.cluster


def test_pepper_fingerprints_identify_without_revealing() -> None:
    one, other = os.urandom(32), os.urandom(32)
    assert pepper_fingerprint(one) == pepper_fingerprint(one)
    assert pepper_fingerprint(one) != pepper_fingerprint(other)
    assert base64.b64encode(one).decode() not in pepper_fingerprint(one)
    assert len(pepper_fingerprint(one)) == 32


async def test_nodes_with_the_same_secrets_join_and_list_each_other(
    settings: Settings, tmp_path: Path, clock: FakeClock
) -> None:
    shared = tmp_path / "shared-keys.json"
    secret = pepper()
    a = await started(
        node_settings(settings, tmp_path, "a", api_key_pepper=secret, signing_keys_file=shared),
        clock,
    )
    b = await started(
        node_settings(settings, tmp_path, "b", api_key_pepper=secret, signing_keys_file=shared),
        clock,
    )
    try:
        nodes = await membership(a).nodes()
        assert {node.node_id for node in nodes} == {membership(a).node_id, membership(b).node_id}
        assert all(node.problems == () for node in nodes)
        assert [node.this_process for node in nodes].count(True) == 1
    finally:
        await b.close()
        await a.close()
    # A clean stop deregisters.
    c = await started(
        node_settings(settings, tmp_path, "c", api_key_pepper=secret, signing_keys_file=shared),
        clock,
    )
    try:
        assert [node.node_id for node in await membership(c).nodes()] == [membership(c).node_id]
    finally:
        await c.close()


async def test_a_node_with_another_pepper_or_signing_key_is_refused(
    settings: Settings, tmp_path: Path, clock: FakeClock
) -> None:
    shared = tmp_path / "shared-keys.json"
    secret = pepper()
    a = await started(
        node_settings(settings, tmp_path, "a", api_key_pepper=secret, signing_keys_file=shared),
        clock,
    )
    try:
        with pytest.raises(ConfigurationError, match="uses another API key pepper"):
            await started(
                node_settings(
                    settings, tmp_path, "b", api_key_pepper=pepper(), signing_keys_file=shared
                ),
                clock,
            )
        with pytest.raises(ConfigurationError, match="cannot verify the tokens"):
            await started(node_settings(settings, tmp_path, "c", api_key_pepper=secret), clock)
    finally:
        await a.close()


async def test_dead_nodes_stop_counting_after_the_live_window(
    settings: Settings, tmp_path: Path, clock: FakeClock
) -> None:
    """A crashed node leaves its row; it no longer blocks others once it is stale."""
    a = await started(node_settings(settings, tmp_path, "a", api_key_pepper=pepper()), clock)
    try:
        async with a.services.db.transaction() as session:
            await ClusterRepository(session).register(
                ClusterNode(
                    node_id="crashed:1:abcd",
                    hostname="elsewhere",
                    pid=1,
                    version="0.0.1",
                    started_at=clock(),
                    last_seen_at=clock(),
                    pepper_fingerprint="0" * 32,
                    active_kid="gone",
                    kids="gone",
                    uses_redis=False,
                )
            )
        problems = [p for node in await membership(a).nodes() for p in node.problems]
        assert any("uses another API key pepper" in p for p in problems)
        if settings.is_sqlite:
            assert any("need PostgreSQL" in p for p in problems)  # another host on SQLite
        clock.advance(seconds=LIVE_WINDOW.total_seconds() + 1)
        await membership(a).heartbeat()  # the live node stays live
        assert [node.node_id for node in await membership(a).nodes()] == [membership(a).node_id]
        clock.advance(days=2)
        await membership(a).heartbeat()
        assert await membership(a).prune_dead() == 1  # rows of long-dead nodes go
    finally:
        await a.close()


async def test_the_pepper_is_adopted_only_while_no_key_depends_on_it(
    settings: Settings, tmp_path: Path, clock: FakeClock
) -> None:
    first = await started(node_settings(settings, tmp_path, "a", api_key_pepper=pepper()), clock)
    await first.close()
    # No key yet: a later node with another pepper takes over.
    second_settings = node_settings(settings, tmp_path, "b", api_key_pepper=pepper())
    second = await started(second_settings, clock)
    try:
        services = second.services
        owner = await services.users.ensure_initial_admin("operator-password-for-cluster")
        assert owner is None  # the password was given
        admin = await services.accounts.authenticate("admin", "operator-password-for-cluster")
        await services.api_keys.create(
            admin.id, KeySpec(name="k", allowed_networks=[], expires_at=clock() + timedelta(days=1))
        )
    finally:
        await second.close()
    # Now keys depend on it: another pepper is refused, even for the CLI.
    third = BackgroundWork(
        build_services(node_settings(settings, tmp_path, "c", api_key_pepper=pepper()), clock=clock)
    )
    try:
        refusal = r"not the one the stored API keys.*or restore the data dir's api-key-pepper"
        with pytest.raises(ConfigurationError, match=refusal):
            await third.start(background=False)
    finally:
        await third.close()
    # The right one still starts.
    again = await started(second_settings, clock)
    await again.close()


async def test_a_second_factor_key_other_than_the_stored_secrets_one_is_refused(
    settings: Settings, tmp_path: Path, clock: FakeClock
) -> None:
    """A lost or replaced second-factor key (the data dir's tfa-key regenerated, the
    wrong file on a node) is refused at start once a TOTP secret or one-time code depends
    on it, even on one node alone: every code would be refused as a wrong one. Before
    that, the new key is adopted."""
    shared = pepper()
    first = await started(
        node_settings(settings, tmp_path, "a", tfa_key=pepper(), api_key_pepper=shared), clock
    )
    await first.close()
    second_settings = node_settings(
        settings, tmp_path, "b", tfa_key=pepper(), api_key_pepper=shared
    )
    second = await started(second_settings, clock)  # nothing depends on it yet: adopted
    try:
        services = second.services
        await services.users.ensure_initial_admin("operator-password-for-cluster")
        admin = await services.accounts.authenticate("admin", "operator-password-for-cluster")
        await services.second_factor.start_enrolment(admin, "TOTP")  # pending: not yet
        async with services.db.transaction() as session:
            session.add(  # an unused recovery code: keyed with the second-factor key
                OneTimeCode(
                    user_id=admin.id,
                    purpose="recovery",
                    code_hash="0" * 64,
                    created_at=clock(),
                    expires_at=None,
                    used_at=None,
                )
            )
    finally:
        await second.close()
    third = BackgroundWork(
        build_services(
            node_settings(settings, tmp_path, "c", tfa_key=pepper(), api_key_pepper=shared),
            clock=clock,
        )
    )
    try:
        with pytest.raises(ConfigurationError, match="not the one the stored authenticator"):
            await third.start(background=False)
    finally:
        await third.close()
    again = await started(second_settings, clock)
    await again.close()


async def test_a_command_never_replaces_the_servers_secrets(
    settings: Settings, tmp_path: Path, clock: FakeClock
) -> None:
    """A CLI command run with another second-factor key or pepper (a fresh data dir,
    a forgotten *_FILE) is refused even while nothing depends on them yet: adopting its
    own would have made the servers, with the right ones, refused at their next start."""
    tfa_key, api_key_pepper = pepper(), pepper()
    server_settings = node_settings(
        settings, tmp_path, "a", tfa_key=tfa_key, api_key_pepper=api_key_pepper
    )
    server = await started(server_settings, clock)
    await server.close()
    for other, refusal in (
        ({"tfa_key": pepper(), "api_key_pepper": api_key_pepper}, "second-factor key is not"),
        ({"tfa_key": tfa_key, "api_key_pepper": pepper()}, "API key pepper is not"),
    ):
        command = BackgroundWork(
            build_services(node_settings(settings, tmp_path, "cli", **other), clock=clock)
        )
        try:
            with pytest.raises(ConfigurationError, match=f"this command's {refusal} the servers'"):
                await command.start(background=False)
        finally:
            await command.close()
    again = await started(server_settings, clock)  # the servers' secrets still hold
    await again.close()


async def test_used_or_expired_codes_do_not_hold_the_second_factor_key(
    settings: Settings, tmp_path: Path, clock: FakeClock
) -> None:
    """Only what a user still relies on counts: a used or expired one-time code (kept,
    never pruned) loses nothing with the key, so a server may adopt another."""
    first = await started(node_settings(settings, tmp_path, "a", tfa_key=pepper()), clock)
    try:
        services = first.services
        await services.users.ensure_initial_admin("operator-password-for-cluster")
        admin = await services.accounts.authenticate("admin", "operator-password-for-cluster")
        async with services.db.transaction() as session:
            for used, expires in ((clock(), None), (None, clock() - timedelta(days=400))):
                session.add(
                    OneTimeCode(
                        user_id=admin.id,
                        purpose="email_login",
                        code_hash="0" * 64,
                        created_at=clock() - timedelta(days=401),
                        expires_at=expires,
                        used_at=used,
                    )
                )
    finally:
        await first.close()
    second = await started(node_settings(settings, tmp_path, "b", tfa_key=pepper()), clock)
    await second.close()


async def test_a_service_credential_holds_the_pepper_too(
    settings: Settings, tmp_path: Path, clock: FakeClock
) -> None:
    """Service credentials are keyed with the pepper like API keys: once one exists,
    a server with another pepper is refused (it adopted its own, and every credential
    was refused after; the second diff review)."""
    first = await started(node_settings(settings, tmp_path, "a", api_key_pepper=pepper()), clock)
    try:
        await first.services.service_credentials.create("log-input", ["api-keys.authenticate"])
    finally:
        await first.close()
    other = node_settings(settings, tmp_path, "b", api_key_pepper=pepper())
    with pytest.raises(ConfigurationError, match="not the one the stored API keys"):
        await started(other, clock)


async def test_heartbeat_registers_again_after_being_pruned(
    settings: Settings, tmp_path: Path, clock: FakeClock
) -> None:
    a = await started(node_settings(settings, tmp_path, "a", api_key_pepper=pepper()), clock)
    try:
        async with a.services.db.transaction() as session:
            await ClusterRepository(session).remove(membership(a).node_id)
        await membership(a).heartbeat()
        assert [node.node_id for node in await membership(a).nodes()] == [membership(a).node_id]
    finally:
        await a.close()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, "every node needs the same API key pepper"),
        ({"api_key_pepper": "x" * 44}, "every node needs the same audit key"),
        (
            {"api_key_pepper": "x" * 44, "audit_key": "y" * 44},
            "every node needs the same JWT signing keys",
        ),
        (
            {
                "api_key_pepper": "x" * 44,
                "audit_key": "y" * 44,
                "signing_keys_file": Path("/shared/keys.json"),
            },
            "several nodes need PostgreSQL",
        ),
    ],
)
def test_cluster_settings_refuse_single_machine_configurations(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        test_settings(tmp_path, cluster=True, **overrides)


def test_hs512_clusters_need_no_key_file(tmp_path: Path) -> None:
    secret = base64.b64encode(os.urandom(64)).decode()
    settings = test_settings(
        tmp_path,
        cluster=True,
        database_url="postgresql+asyncpg://db/authgate",
        api_key_pepper=pepper(),
        audit_key=pepper(),
        tfa_key=pepper(),
        jwt_algorithm="HS512",
        jwt_secret=secret,
    )
    assert settings.cluster_problems() == []
