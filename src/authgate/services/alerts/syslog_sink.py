"""The syslog sink: RFC 5424 messages carrying CEF lines (``formats``), over UDP or TCP."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from authgate.services.alerts.formats import (
    syslog_checkpoint_message,
    syslog_hostname,
    syslog_message,
)
from authgate.services.alerts.messages import Alert, CheckpointNotice, DeliveryError
from authgate.services.alerts.targets import validate_syslog_target


class SyslogSink:
    """Sends an RFC 5424 message carrying a CEF line over UDP or TCP (RFC 6587 framing).

    ``<PRI>1 TIMESTAMP HOSTNAME authgate - ALERT - CEF:0|authgate|authgate|...``; the
    facility is authpriv. Each delivery opens its own connection (alerts are rare).
    """

    name = "syslog"

    def __init__(self, target: str, *, timeout: float = 5.0, hostname: str | None = None) -> None:
        self._protocol, self._host, self._port = validate_syslog_target(target)
        self._timeout = timeout
        self._hostname = syslog_hostname(socket.gethostname() if hostname is None else hostname)

    def __repr__(self) -> str:
        return f"SyslogSink('{self._protocol}://{self._host}:{self._port}')"

    def format(self, alert: Alert) -> bytes:
        """The RFC 5424 message for ``alert`` (without transport framing)."""
        return syslog_message(alert, self._hostname)

    def format_checkpoint(self, notice: CheckpointNotice) -> bytes:
        """The RFC 5424 message for an audit checkpoint, at severity informational."""
        return syslog_checkpoint_message(notice, self._hostname)

    async def deliver(self, alert: Alert) -> None:
        await self._send(self.format(alert))

    async def deliver_checkpoint(self, notice: CheckpointNotice) -> None:
        await self._send(self.format_checkpoint(notice))

    async def _send(self, message: bytes) -> None:
        where = f"syslog {self._protocol}://{self._host}:{self._port}"
        try:
            async with asyncio.timeout(self._timeout):
                if self._protocol == "tcp":
                    await self._send_tcp(f"{len(message)} ".encode() + message)
                else:
                    await self._send_udp(message)
        except TimeoutError:
            raise DeliveryError(f"{where}: timed out") from None
        except OSError as error:
            raise DeliveryError(f"{where}: {error.strerror or type(error).__name__}") from None

    async def _send_tcp(self, frame: bytes) -> None:
        _, writer = await asyncio.open_connection(self._host, self._port)
        try:
            writer.write(frame)
            await writer.drain()
        finally:
            writer.close()
            # The frame was handed over; a reset while closing loses nothing.
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _send_udp(self, datagram: bytes) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=(self._host, self._port)
        )
        try:
            transport.sendto(datagram)
        finally:
            transport.close()
