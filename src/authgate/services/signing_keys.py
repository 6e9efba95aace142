"""Keeping each process's signing keys in step with the key file.

``authgate signing-keys rotate`` rewrites the file; running workers notice the new
modification time on their next poll tick and start signing with the new key, while
tokens signed with the old one keep verifying.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from authgate.clock import Clock
from authgate.exceptions import ConfigurationError
from authgate.security.signing_keys import AsymmetricAlgorithm, KeyRing
from authgate.services.ports import KeyringFiles

log = logging.getLogger(__name__)


class SigningKeyFile:
    """The key ring file of an ES256/EdDSA deployment."""

    def __init__(
        self, path: Path, *, algorithm: AsymmetricAlgorithm, clock: Clock, files: KeyringFiles
    ) -> None:
        self._path = path
        self._files = files
        self._algorithm = algorithm
        self._clock = clock
        self._seen_mtime: int | None = None
        # Whether the file did not exist when this process loaded it (a first start, or
        # a lost or moved file: ``BackgroundWork.start`` tells which, from the users).
        self.created_at_start = False

    @property
    def path(self) -> Path:
        return self._path

    def load_or_create(self) -> KeyRing:
        self.created_at_start = not self._path.exists()
        ring = self._files.load_or_create_keyring(self._path, self._algorithm, now=self._clock())
        self._seen_mtime = self._mtime()
        return ring

    def rotate(self, *, keep_for: timedelta, stage: bool = False) -> KeyRing:
        """A new active key (the staged one, if any); with ``stage``, a new key staged."""
        return self._files.rotate_keyring(
            self._path, self._algorithm, now=self._clock(), keep_for=keep_for, stage=stage
        )

    def reload_if_changed(self, apply: Callable[[KeyRing], None]) -> None:
        """Call ``apply`` with the file's ring if it changed since the last look."""
        mtime = self._mtime()
        if mtime is None or mtime == self._seen_mtime:
            return
        try:
            ring = self._files.load_keyring(self._path)
        except ConfigurationError as error:
            # A half-edited or broken file: keep the keys in memory and say so once.
            log.error("signing key file changed but cannot be used: %s", error)
        else:
            apply(ring)
            log.info("signing keys reloaded; active kid %s", ring.active.kid)
        self._seen_mtime = mtime

    def _mtime(self) -> int | None:
        try:
            return self._path.stat().st_mtime_ns
        except OSError:
            return None
