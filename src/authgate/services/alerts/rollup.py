"""The bound on alerts per rule and window, whatever subjects an attacker makes up.

A rule fires at most once per subject and window, but subjects are often the
attacker's to choose (the login typed, the address sent from): without a bound, one
client could fire as many alerts, and send as many e-mails, as it can name subjects,
and fill the sinks' queues until genuine alerts are dropped. So once
``max_subjects`` subjects have fired for a rule within one of its windows, further
subjects that reach the threshold in that window are rolled up: one summary alert
("+N more subjects", their number and a few of them) is sent when the first of them is
seen, and at most one more, when their number has at least doubled and grown by
``max_subjects`` since. The counts are kept in the engine's memory (each node evaluates
every record the same way); the summaries are fired alerts like others, deduplicated
in the database under their own rule key and fixed subjects, so a restart or a second
node never sends a third.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from authgate.services.alerts.kinds import duration

# The fixed subjects of a window's first summary and of its one update.
SUMMARY_SUBJECTS: Final = ("more subjects", "more subjects (update)")
EXAMPLES: Final = 3
# Distinct subjects remembered per rule and window: beyond, only "more than" is known.
MAX_TRACKED: Final = 20_000


def summary_rule_key(rule_key: str) -> str:
    """The rule key the summaries of ``rule_key`` are deduplicated under."""
    return f"{rule_key}:more"


@dataclass(slots=True)
class Rollup:
    """The subjects of one rule's window that reached the threshold beyond the bound."""

    window_start: int
    window_seconds: int
    subjects: set[str] = field(default_factory=set)
    examples: list[str] = field(default_factory=list)
    untracked: bool = False  # more subjects came than MAX_TRACKED
    sent: list[int] = field(default_factory=list)  # the counts the summaries carried

    @property
    def window_end(self) -> int:
        return self.window_start + self.window_seconds

    @property
    def count(self) -> int:
        return len(self.subjects)

    def __contains__(self, subject: str) -> bool:
        return subject in self.subjects

    def add(self, subject: str) -> None:
        if len(self.subjects) >= MAX_TRACKED:
            self.untracked = True
            return
        self.subjects.add(subject)
        if len(self.examples) < EXAMPLES:
            self.examples.append(subject)

    def due(self, max_subjects: int) -> int | None:
        """The summary to send now (0: the first, 1: the update), or None."""
        if not self.subjects or len(self.sent) >= len(SUMMARY_SUBJECTS):
            return None
        if not self.sent:
            return 0
        first = self.sent[0]
        grown = self.count >= max(2 * first, first + max_subjects)
        return 1 if grown else None

    def summarize(self, rule: str, max_subjects: int) -> str:
        partly = " (at least: not all were counted)" if self.untracked else ""
        examples = ", ".join(self.examples)
        return (
            f"{rule}: +{self.count} more subjects{partly} reached the threshold within "
            f"{duration(self.window_seconds)}, beyond the {max_subjects} alerted on "
            f"(e.g. {examples})"
        )
