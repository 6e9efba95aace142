"""The sink that is always there: the server's log."""

from __future__ import annotations

import logging

from authgate.services.alerts.messages import Alert, CheckpointNotice, compact_json


class LogSink:
    """Logs each alert as one WARNING line with the alert's JSON (always configured)."""

    name = "log"

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    async def deliver(self, alert: Alert) -> None:
        self._logger.warning("alert %s", compact_json(alert.as_json()))

    async def deliver_checkpoint(self, notice: CheckpointNotice) -> None:
        self._logger.info("audit checkpoint %s", compact_json(notice.as_json()))
