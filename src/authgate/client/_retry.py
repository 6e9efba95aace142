"""When to send a request again after 423, 429 or 503, and how long to wait first.

The server says how long in ``Retry-After``; without it the wait doubles from
``backoff``. Retries are bounded twice: at most ``attempts`` more tries, and never a wait
longer than ``max_delay`` (a longer ``Retry-After`` is raised at once, so a script never
hangs for the ten minutes of a login block). Only idempotent methods are retried unless
``retry_non_idempotent`` is set: a POST that was refused for throttling did not happen,
but a POST that timed out half-way might have, and this policy cannot tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from authgate.client._exceptions import ClientConfigError

__all__ = ["IDEMPOTENT_METHODS", "RetryPolicy"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def _default_statuses() -> frozenset[int]:
    return frozenset({423, 429, 503})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries for throttled or unavailable answers.

    Args:
        attempts: further tries after the first one (0 disables retrying).
        backoff: first wait, in seconds, when the server sends no ``Retry-After``;
            doubled for each further try.
        max_delay: the longest wait; a longer ``Retry-After`` is not waited for.
        statuses: the statuses worth another try.
        retry_non_idempotent: also retry POST and PATCH.
    """

    attempts: int = 2
    backoff: float = 0.5
    max_delay: float = 30.0
    statuses: frozenset[int] = field(default_factory=_default_statuses)
    retry_non_idempotent: bool = False

    def __post_init__(self) -> None:
        if self.attempts < 0:
            raise ClientConfigError("RetryPolicy.attempts must be 0 or more")
        if self.backoff < 0 or self.max_delay < 0:
            raise ClientConfigError("RetryPolicy.backoff and max_delay must be 0 or more")

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """Never retry."""
        return cls(attempts=0)

    def delay(
        self, *, method: str, status: int, retry_after: float | None, retries_done: int
    ) -> float | None:
        """Seconds to wait before the next try, or None to stop and raise.

        Args:
            method: the request's method.
            status: the answer's status.
            retry_after: the answer's ``Retry-After`` in seconds, if any.
            retries_done: how many retries were already made for this request.
        """
        if retries_done >= self.attempts or status not in self.statuses:
            return None
        if method.upper() not in IDEMPOTENT_METHODS and not self.retry_non_idempotent:
            return None
        wait = retry_after if retry_after is not None else self.backoff * 2**retries_done
        if wait > self.max_delay:
            return None
        return wait
