"""Several nodes, one deployment: what every node must share, checked before it serves.

Nodes keep no state of their own beyond bounded caches: PostgreSQL is the source of
truth and Redis (optional) holds shared counters and rings the change doorbell. What
nodes cannot get from the database has to come from their configuration, identically:

* the API key pepper: key digests are HMACs under it, so a node with another pepper
  refuses every key. Its fingerprint is stored in the database on first start and a
  node (or CLI) with a different pepper refuses to start while keys exist;
* the audit key: the audit chain is keyed with it, so a node with another key would
  write records every other node reads as forged. A node whose key differs from a live
  node's refuses to start (the fingerprints in ``cluster_nodes`` are compared), and so
  does one whose key is not the one the chain is keyed with (``AuditLog.check_key``);
* the JWT signing keys: a node must verify what every other node signs. Each serving
  process registers in ``cluster_nodes`` (heartbeat every few seconds) with the key
  ids it verifies and the one it signs with, and a node that disagrees with a live
  one refuses to start; a disagreement that appears later (a key file rotated on one
  node only) is logged;
* SQLite lives on one machine: live nodes on two hosts sharing an SQLite file are
  refused.

``AUTHGATE_CLUSTER=true`` declares a node one of several and adds the checks a single
node cannot make about its peers (``Settings.cluster_problems``): PostgreSQL, a pepper,
an audit key and signing keys given in the configuration (shared files or variables)
rather than generated into the data dir.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from authgate.clock import Clock
from authgate.exceptions import ConfigurationError
from authgate.security.signing_keys import KeyRing
from authgate.services.ports import ClusterRepo, Database
from authgate.storage.errors import Conflict as StorageConflict
from authgate.storage.models import ClusterNode

log = logging.getLogger(__name__)

PEPPER_FINGERPRINT = "api_key_pepper_fingerprint"
TFA_KEY_FINGERPRINT = "tfa_key_fingerprint"


@dataclass(frozen=True, slots=True)
class _KeptSecret:
    """A secret kept outside the database whose fingerprint is stored in it, as the
    start-up check names it."""

    setting: str  # the fingerprint's name in deployment_settings
    what: str
    depending: str  # "the one <depending>"
    refused: str  # what would be refused with another
    variables: str
    remedy: str = ""


_PEPPER = _KeptSecret(
    setting=PEPPER_FINGERPRINT,
    what="API key pepper",
    depending="the stored API keys were hashed with",
    refused="every key would be refused",
    variables="AUTHGATE_API_KEY_PEPPER_FILE or AUTHGATE_API_KEY_PEPPER",
    remedy=", or restore the data dir's api-key-pepper file",
)
_TFA_KEY = _KeptSecret(
    setting=TFA_KEY_FINGERPRINT,
    what="second-factor key",
    depending="the stored authenticator secrets and one-time codes depend on",
    refused="every second-factor code would be refused",
    variables="AUTHGATE_TFA_KEY_FILE or AUTHGATE_TFA_KEY",
    remedy=", or restore the data dir's tfa-key file",
)
HEARTBEAT_SECONDS = 5.0
# A node not heard of for three heartbeats is presumed dead (a crash leaves its row).
LIVE_WINDOW = timedelta(seconds=3 * HEARTBEAT_SECONDS)
DEAD_ROW_RETENTION = timedelta(days=1)


def pepper_fingerprint(pepper: bytes) -> str:
    """Identifies a pepper without revealing it (an HMAC of a fixed label)."""
    digest = hmac.new(pepper, b"authgate api key pepper fingerprint v1", hashlib.sha256)
    return digest.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A live node as the registry shows it, judged against this process."""

    node_id: str
    hostname: str
    pid: int
    version: str
    started_at: datetime
    last_seen_at: datetime
    uses_redis: bool
    active_kid: str
    this_process: bool
    problems: tuple[str, ...]


class ClusterMembership:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        pepper: bytes,
        audit_key_fingerprint: str,
        tfa_key_fingerprint: str,
        keyring: Callable[[], KeyRing],
        uses_redis: bool,
        version: str,
    ) -> None:
        self._db = db
        self._clock = clock
        self._fingerprint = pepper_fingerprint(pepper)
        self._audit_fingerprint = audit_key_fingerprint
        self._tfa_fingerprint = tfa_key_fingerprint
        self._keyring = keyring
        self._uses_redis = uses_redis
        self._version = version
        self.hostname = socket.gethostname()[:255]
        self.node_id = f"{self.hostname[:80]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._registered = False
        self._reported: set[str] = set()
        self._failing = False

    # -- start and stop ----------------------------------------------------------------------

    async def check_stored_keys(self, *, serving: bool = True) -> None:
        """Refuse a pepper other than the one the stored keys were hashed with, and a
        second-factor key other than the one the stored TOTP secrets and one-time codes
        depend on (a single node too: a lost or replaced ``tfa-key`` file). While
        nothing depends on them, a server adopts its own; a CLI command (not
        ``serving``) never replaces the servers' fingerprints: run with other secrets,
        it is refused (what it wrote would not be the servers', and its fingerprint
        would then refuse the servers)."""
        for attempt in range(3):
            try:
                async with self._db.transaction() as session:
                    registry = self._db.cluster(session)
                    await self._check_pepper(registry, serving=serving)
                    await self._check_tfa_key(registry, serving=serving)
                return
            except StorageConflict:  # another node stored the first fingerprint meanwhile
                if attempt == 2:
                    raise

    async def preflight(self) -> None:
        """Refuse to serve with a pepper or signing keys the data or the live nodes
        disagree with (``ConfigurationError`` naming every problem)."""
        async with self._db.session() as session:
            live = await self._db.cluster(session).live_nodes(self._clock() - LIVE_WINDOW)
        problems = sorted({problem for node in live for problem in self._conflicts(node)})
        if problems:
            raise ConfigurationError(
                "this node's configuration does not match the running nodes: " + "; ".join(problems)
            )
        await self.check_stored_keys()  # only now: it may adopt this node's pepper

    async def join(self) -> None:
        """Check this node against the data and the live nodes, then register it."""
        await self.preflight()
        now = self._clock()
        ring = self._keyring()
        async with self._db.transaction() as session:
            await self._db.cluster(session).register(
                ClusterNode(
                    node_id=self.node_id,
                    hostname=self.hostname,
                    pid=os.getpid(),
                    version=self._version[:40],
                    started_at=now,
                    last_seen_at=now,
                    pepper_fingerprint=self._fingerprint,
                    audit_key_fingerprint=self._audit_fingerprint,
                    tfa_key_fingerprint=self._tfa_fingerprint,
                    active_kid=ring.active.kid,
                    kids=_joined_kids(ring),
                    uses_redis=self._uses_redis,
                )
            )
        self._registered = True

    async def leave(self) -> None:
        if not self._registered:
            return
        self._registered = False
        try:
            async with self._db.transaction() as session:
                await self._db.cluster(session).remove(self.node_id)
        except Exception as error:  # noqa: BLE001 - stopping: the row ages out anyway
            log.warning("could not deregister this node: %s", type(error).__name__)

    # -- while serving -----------------------------------------------------------------------

    async def heartbeat(self) -> None:
        """Tell the others this node is alive (with its current keys), and log any
        disagreement that appeared since start (once each). Failures are logged once."""
        if not self._registered:
            return
        now = self._clock()
        ring = self._keyring()
        try:
            async with self._db.transaction() as session:
                registry = self._db.cluster(session)
                touched = await registry.touch(
                    self.node_id, now=now, active_kid=ring.active.kid, kids=_joined_kids(ring)
                )
                live = await registry.live_nodes(now - LIVE_WINDOW)
        except Exception as error:  # noqa: BLE001 - the next beat retries
            if not self._failing:
                log.warning("cluster heartbeat failed: %s", type(error).__name__)
            self._failing = True
            return
        self._failing = False
        if not touched:  # pruned while the database was unreachable: register again
            self._registered = False
            await self.join()
            return
        for node in live:
            for problem in self._conflicts(node):
                if problem not in self._reported:
                    self._reported.add(problem)
                    log.error("cluster configuration problem: %s", problem)

    async def older_nodes_running(self) -> bool:
        """Whether a live node of a version without the audit key is running (it writes
        the audit chain unkeyed, so the key must not be introduced yet)."""
        async with self._db.session() as session:
            live = await self._db.cluster(session).live_nodes(self._clock() - LIVE_WINDOW)
        return any(
            node.audit_key_fingerprint is None and node.node_id != self.node_id for node in live
        )

    async def prune_dead(self) -> int:
        async with self._db.transaction() as session:
            return await self._db.cluster(session).prune(self._clock() - DEAD_ROW_RETENTION)

    async def nodes(self) -> list[NodeInfo]:
        """The live nodes, each with what it disagrees with this process about."""
        async with self._db.session() as session:
            live = await self._db.cluster(session).live_nodes(self._clock() - LIVE_WINDOW)
        return [
            NodeInfo(
                node_id=node.node_id,
                hostname=node.hostname,
                pid=node.pid,
                version=node.version,
                started_at=node.started_at,
                last_seen_at=node.last_seen_at,
                uses_redis=node.uses_redis,
                active_kid=node.active_kid,
                this_process=node.node_id == self.node_id,
                problems=tuple(self._conflicts(node)),
            )
            for node in live
        ]

    # -- rules ---------------------------------------------------------------------------------

    async def _check_pepper(self, registry: ClusterRepo, *, serving: bool) -> None:
        await self._check_fingerprint(
            registry, _PEPPER, self._fingerprint, registry.any_api_keys, serving=serving
        )

    async def _check_tfa_key(self, registry: ClusterRepo, *, serving: bool) -> None:
        now = self._clock()

        async def depended_on() -> bool:
            return await registry.any_second_factor_secrets(now=now)

        await self._check_fingerprint(
            registry, _TFA_KEY, self._tfa_fingerprint, depended_on, serving=serving
        )

    async def _check_fingerprint(
        self,
        registry: ClusterRepo,
        secret: _KeptSecret,
        mine: str,
        depended_on: Callable[[], Awaitable[bool]],
        *,
        serving: bool,
    ) -> None:
        """Refuse ``mine`` when it is not the stored fingerprint and stored data depend
        on the secret, or when a command (not ``serving``) would replace the servers';
        otherwise record it (a server adopts its own while nothing depends on the one
        stored)."""
        stored = await registry.setting(secret.setting)
        if stored == mine:
            return
        needed = await depended_on()
        fingerprints = f"(fingerprints: database {(stored or '')[:12]}, this node {mine[:12]})"
        if stored is None:
            if needed:  # a deployment from before the check: its secret taken on trust, once
                log.warning(
                    "recording this node's %s as the one %s; if they are refused from now "
                    "on, it is not (README: Backups and lost secrets)",
                    secret.what,
                    secret.depending,
                )
        elif needed:
            raise ConfigurationError(
                f"this node's {secret.what} is not the one {secret.depending}, so "
                f"{secret.refused}: give every node (and the CLI) the same "
                f"{secret.variables}{secret.remedy} {fingerprints}"
            )
        elif not serving:
            raise ConfigurationError(
                f"this command's {secret.what} is not the servers': run it with their "
                f"{secret.variables} {fingerprints.replace('this node', 'this command')}"
            )
        else:
            log.warning("nothing depends on the stored %s yet: adopting this node's", secret.what)
        await registry.put_setting(secret.setting, mine, now=self._clock())

    def _conflicts(self, node: ClusterNode) -> list[str]:
        if node.node_id == self.node_id:
            return []
        name = f"node {node.hostname} (pid {node.pid})"
        problems = []
        if node.pepper_fingerprint != self._fingerprint:
            problems.append(f"{name} uses another API key pepper")
        theirs_audit = node.audit_key_fingerprint
        if theirs_audit is not None and theirs_audit != self._audit_fingerprint:
            problems.append(
                f"{name} uses another audit key: give every node the same "
                "AUTHGATE_AUDIT_KEY_FILE (or AUTHGATE_AUDIT_KEY)"
            )
        theirs_tfa = node.tfa_key_fingerprint
        if theirs_tfa is not None and theirs_tfa != self._tfa_fingerprint:
            # Second-factor secrets one node encrypts, another could not read: its users'
            # codes would be refused there.
            problems.append(
                f"{name} uses another second-factor key: give every node the same "
                "AUTHGATE_TFA_KEY_FILE (or AUTHGATE_TFA_KEY)"
            )
        ring = self._keyring()
        theirs = frozenset(node.kids.split(","))
        if ring.active.kid not in theirs:
            problems.append(
                f"{name} cannot verify the tokens this node signs (key {ring.active.kid}): "
                "share one signing key file (AUTHGATE_SIGNING_KEYS_FILE) or JWT secret"
            )
        if ring.find(node.active_kid) is None:
            problems.append(
                f"this node cannot verify the tokens {name} signs (key {node.active_kid}): "
                "share one signing key file (AUTHGATE_SIGNING_KEYS_FILE) or JWT secret"
            )
        if self._db.is_sqlite and node.hostname != self.hostname:
            problems.append(
                f"{name} on another machine uses this SQLite database: several machines "
                "need PostgreSQL"
            )
        return problems


def _joined_kids(ring: KeyRing) -> str:
    return ",".join(key.kid for key in ring.keys)[:2000]


def describe(nodes: Sequence[NodeInfo]) -> list[str]:
    """Every problem any live node has, without repeats (for health checks and the CLI)."""
    return sorted({problem for node in nodes for problem in node.problems})
