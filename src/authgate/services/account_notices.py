"""Mail to the address an account is leaving: when a user's e-mail address changes, the
old address is told, so that the owner hears of it even when someone else made the
change (the new address is where password-reset links and e-mailed codes go from now
on). Sent in the background after the change is committed; without an SMTP server,
nothing is sent (the audit trail's ``USER_UPDATED`` record names the field either way).
"""

from __future__ import annotations

import asyncio
import logging

from authgate.clock import Clock
from authgate.services.audit.events import printable
from authgate.services.mail import Mailer, MailNotSent

log = logging.getLogger(__name__)


class AccountNotices:
    def __init__(self, *, mailer: Mailer, clock: Clock) -> None:
        self._mailer = mailer
        self._clock = clock
        self._pending: set[asyncio.Task[None]] = set()

    def email_changed(self, login: str, old: str, new: str) -> None:
        """Tell ``old`` that ``login``'s address is now ``new``. Returns at once."""
        if not self._mailer.configured:
            return
        task = asyncio.create_task(self._send(login, old, new), name="authgate-email-notice")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def settle(self) -> None:
        """Wait for every notice sent so far (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def _send(self, login: str, old: str, new: str) -> None:
        now = self._clock()
        body = (
            f"The e-mail address of the authgate account {login} was changed\n"
            f"from {old}\nto   {new}\n"
            f"at {now.strftime('%Y-%m-%d %H:%M')} UTC.\n\n"
            "Password-reset links and sign-in codes now go to the new address. If you did\n"
            "not ask for this change, tell your administrator at once.\n"
        )
        try:
            await self._mailer.send_text(
                to=old, subject="authgate: your e-mail address was changed", body=body, sent_at=now
            )
        except (MailNotSent, ValueError) as error:
            log.warning("e-mail change notice for %s not sent: %s", printable(login), error)
        except Exception:  # a background task: log, never lose the loop
            log.exception("e-mail change notice failed")
