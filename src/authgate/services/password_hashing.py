"""Password hashing off the event loop: a bounded pool of low-priority threads.

One Argon2id hash costs ~20-40 ms of CPU. Run on the event loop, it would stall every
other request; run in unbounded threads, a login flood would take every core from the
requests that only verify a key or a token (microseconds each). So hashes run in a pool
of its own (``threads``, default one per CPU the process may run on: its affinity mask,
which a container's cpuset or ``taskset`` narrows) whose threads lower their own OS
scheduling priority when they start (``priority``):

* ``"nice"`` (default): a per-thread nice value (``nice``, default 10; Linux:
  ``os.setpriority`` on the thread's native id): under contention the kernel gives the
  event loop's thread most of the CPU, but a nice-10 thread still keeps ~10 % of the
  weight of a nice-0 one and is not always preempted when the event loop wakes up.
* ``"idle"`` (Linux): the thread joins the ``SCHED_IDLE`` class, whose tasks get a CPU
  only when no normal task wants it, and which a normal task waking up preempts at
  once. Where the policy cannot be set (not Linux, or refused, as some sandboxes do),
  the thread falls back to ``"nice"``. Not the default: on a host whose CPUs other
  programs keep busy (in the same cgroup), such threads get next to nothing done
  (``bench/hashing_priority.py`` measured 1-2 verifications/s against ~20 at nice 10
  on a loaded 2-core host), and one preempted while it holds the GIL would hold up the
  event loop until the CPU is free (a likely cause of the 259 ms worst wake-up
  measured there, not shown apart).

Either way logins use what is left of the CPU.

Logins beyond the pool wait in a bounded queue (``queue_size``). A queued hash that
cannot start within ``queue_timeout`` seconds, or one that finds the queue full, is
refused with :class:`~authgate.exceptions.HashingOverloaded` (HTTP 503 with
``Retry-After``): a flood gets quick refusals instead of an ever longer wait, and
nothing it sends can occupy more than the pool. A hash that finds a thread free is not
queued and never refused, however long a busy host takes to schedule that thread.

A password check from an address known to the account (``known_address``: it logged
into that account within ``AUTHGATE_LOGIN_KNOWN_IP_DAYS``; ``login_protection``) may
also take one of ``known_queue_size`` places beyond the queue, which nothing else can
fill; and while both kinds wait, a free thread takes them in turn, a known address's
check first: a flood of logins from addresses the accounts have never logged in from
cannot refuse the owner's login from a known place (it waits for at most one other
hash per thread), and logins from known addresses, however many and however often
(an account's own holder logging in in a loop), cannot starve the others either: they
get every other turn. Within each of the two, first come, first served.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from authgate.exceptions import HashingOverloaded
from authgate.reasons import Reason
from authgate.security.passwords import Argon2Parameters, PasswordHasher

log = logging.getLogger(__name__)

T = TypeVar("T")


Priority = Literal["idle", "nice"]


class _Expired(Exception):
    """The job waited past its deadline; it was not run."""


class _Job:
    """One hash waiting for a thread: what to run, by when it must start, its result."""

    __slots__ = ("args", "deadline", "future", "work")

    def __init__(self, work: Callable[..., Any], args: tuple[str, ...], deadline: float) -> None:
        self.work = work
        self.args = args
        self.deadline = deadline
        self.future: Future[Any] = Future()


def available_cpus() -> int:
    """The CPUs this process may run on (Linux: its affinity mask), else ``os.cpu_count()``.

    More hashing threads than that only time-share the same CPUs: each hash takes longer
    and the threads evict each other's Argon2 memory from the caches.
    """
    if hasattr(os, "sched_getaffinity"):
        try:
            return len(os.sched_getaffinity(0)) or 1
        except OSError:
            pass
    return os.cpu_count() or 1


def lower_thread_priority(priority: Priority, nice: int) -> Priority | None:
    """Lower the calling thread's scheduling priority (Linux: per thread), if allowed.

    ``"idle"`` tries ``SCHED_IDLE`` and falls back to the nice value ``nice`` when the
    policy is missing or refused. Returns what was applied (``None``: nothing).
    """
    if priority == "idle" and hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(threading.get_native_id(), os.SCHED_IDLE, os.sched_param(0))
        except OSError as refused:
            log.warning(
                "hashing thread: SCHED_IDLE refused (%s); using nice %d instead", refused, nice
            )
        else:
            return "idle"
    if nice <= 0 or not hasattr(os, "setpriority"):
        return None
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError as refused:
        # A sandbox may forbid the call (systemd's @resources): say so, since logins
        # then compete with every other request for the CPU.
        log.warning(
            "hashing thread: lowering its priority (nice %d) refused (%s); logins may "
            "slow down other requests",
            nice,
            refused,
        )
        return None
    return "nice"


_OWASP = Argon2Parameters()


class HashingConfig(BaseModel):
    """``Settings.password_hashing``: Argon2id's cost (``AUTHGATE_ARGON2_*``) and the
    hashing threads (``AUTHGATE_PASSWORD_HASHING_*``; ``authgate.settings_names``), or a
    ``[password_hashing]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_cost: int = Field(default=_OWASP.time_cost, ge=1, le=20)
    memory_kib: int = Field(default=_OWASP.memory_kib, ge=8, le=4 * 1024 * 1024)
    parallelism: int = Field(default=_OWASP.parallelism, ge=1, le=16)
    threads: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Concurrent hashes; 0 means one per CPU the process may run on.",
    )
    queue_size: int = Field(
        default=64,
        ge=0,
        le=100_000,
        description="Hashes (logins, password changes) that may wait for a hashing thread; "
        "beyond it they are refused with 503 and Retry-After.",
    )
    known_queue_size: int = Field(
        default=16,
        ge=0,
        le=100_000,
        description="Places beyond the queue kept for password checks from addresses "
        "known to the account (it logged in from there within AUTHGATE_LOGIN_KNOWN_IP_DAYS); "
        "such checks and other hashes take turns for a free thread, a known one first.",
    )
    queue_timeout: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="A hash that cannot start within this time (seconds) is refused with 503.",
    )
    priority: Priority = Field(
        default="nice",
        description="How the hashing threads yield the CPU to the event loop: 'nice' "
        "(the nice value below) or 'idle' (Linux SCHED_IDLE: they run only when nothing "
        "else in the cgroup wants the CPU, falling back to 'nice' where the policy cannot "
        "be set; for hosts or cgroups of authgate's own).",
    )
    nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="OS nice value of the hashing threads (Linux, per thread) with "
        "priority 'nice', or where 'idle' cannot be set: verification of keys and tokens "
        "on the event loop gets the CPU first; 0 leaves it unchanged.",
    )

    @property
    def argon2(self) -> Argon2Parameters:
        return Argon2Parameters(
            time_cost=self.time_cost, memory_kib=self.memory_kib, parallelism=self.parallelism
        )


class AsyncPasswordHasher:
    def __init__(
        self,
        hasher: PasswordHasher,
        *,
        config: HashingConfig | None = None,
        observe: Callable[[float], None] | None = None,
        on_overload: Callable[[], None] | None = None,
    ) -> None:
        self._hasher = hasher
        self._observe = observe
        self._on_overload = on_overload
        config = config or HashingConfig()
        self._threads = config.threads or available_cpus()
        self._queue_size = config.queue_size
        self._queue_timeout = config.queue_timeout
        self._priority: Priority = config.priority
        self._nice = config.nice
        self._known_queue_size = config.known_queue_size
        # Hashes admitted and not finished (only touched on the event loop), and those
        # not yet taken by a thread, per kind (appended on the loop, taken by the threads:
        # a deque's append and popleft are atomic).
        self._pending = 0
        self._known_jobs: deque[_Job] = deque()
        self._jobs: deque[_Job] = deque()
        # Whether the last turn went to a known address's check (the threads' own: a
        # race between two of them only changes whose turn one hash is).
        self._known_had_turn = False
        self._pool: ThreadPoolExecutor | None = None  # started on first use

    @property
    def threads(self) -> int:
        return self._threads

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self._threads,
                thread_name_prefix="authgate-argon2",
                initializer=lower_thread_priority,
                initargs=(self._priority, self._nice),
            )
        return self._pool

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(
        self, stored_hash: str, password: str, *, known_address: bool = False
    ) -> Literal[True]:
        """Raises ``BadCredentials`` on mismatch (see ``PasswordHasher.verify``).
        ``known_address``: a check from an address known to the account (see the
        module's doc)."""
        return await self._run(self._hasher.verify, stored_hash, password, known=known_address)

    async def spend_equal_time(self, password: str, *, known_address: bool = False) -> None:
        await self._run(self._hasher.spend_equal_time, password, known=known_address)

    async def _run(self, work: Callable[..., T], *args: str, known: bool = False) -> T:
        room = self._threads + self._queue_size + (self._known_queue_size if known else 0)
        if self._pending >= room:
            raise self._overloaded()
        # Only a hash that has to queue behind others gets a deadline: one that finds a
        # thread free is never refused, however long a busy host takes to schedule the
        # (low-priority) thread; the deadline sheds floods, not slow CPUs.
        deadline = (
            time.monotonic() + self._queue_timeout
            if self._pending >= self._threads
            else float("inf")
        )
        job = _Job(work, args, deadline)
        (self._known_jobs if known else self._jobs).append(job)
        self._pending += 1
        try:
            # One turn of a thread per job; the turn takes whichever job comes first
            # (``_take_turn``), so a thread that ends a hash starts the next at once,
            # without waiting for the event loop.
            self._executor().submit(self._take_turn)
            result: T = await asyncio.wrap_future(job.future)
            return result
        except _Expired:
            raise self._overloaded() from None
        finally:
            self._pending -= 1

    def _take_turn(self) -> None:
        """In a hashing thread: run the oldest job from a known address, or, when the
        last turn went to one and another job waits, the oldest other one (there is one
        job per turn: each is queued before its turn)."""
        known, other = self._known_jobs, self._jobs
        first, second = (other, known) if self._known_had_turn and other else (known, other)
        try:
            job = first.popleft()
            self._known_had_turn = first is known
        except IndexError:
            try:
                job = second.popleft()
                self._known_had_turn = second is known
            except IndexError:  # the pool was closed and the queues emptied
                return
        if not job.future.set_running_or_notify_cancel():
            return  # its caller gave up (cancelled) while it waited
        started = time.monotonic()
        if started > job.deadline:
            job.future.set_exception(_Expired())
            return
        try:
            result = job.work(*job.args)
        except BaseException as error:  # noqa: BLE001 - the caller's, as an executor hands it
            job.future.set_exception(error)
        else:
            job.future.set_result(result)
        finally:
            if self._observe is not None:
                self._observe(time.monotonic() - started)

    def _overloaded(self) -> HashingOverloaded:
        if self._on_overload is not None:
            self._on_overload()
        retry_after = max(1, round(self._queue_timeout))
        return HashingOverloaded(retry_after=retry_after, reason=Reason.HASHING_OVERLOADED)

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.needs_rehash(stored_hash)

    def close(self) -> None:
        """Stop the threads once the hashes in flight are done (queued ones are dropped)."""
        for queue in (self._known_jobs, self._jobs):
            while queue:
                try:
                    queue.popleft().future.cancel()  # its caller gets CancelledError
                except IndexError:  # a thread took the last one meanwhile
                    break
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
