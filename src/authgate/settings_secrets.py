"""``*_FILE`` twins of the secret settings: ``AUTHGATE_METRICS_TOKEN_FILE=/run/secrets/x``
instead of the token itself in the environment (where ``ps e``, ``/proc/<pid>/environ``,
crash reports and ``docker inspect`` show it).

One rule for every secret: the file's content, without its final line break, is the
value; giving both the value and the file is refused; a file that others may read is
warned about (the secret is only as private as its file).
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("authgate.settings")

# Every setting holding a secret; each has a ``<name>_file`` setting beside it.
SECRET_SETTINGS = (
    "database_url",
    "redis_url",
    "jwt_secret",
    "api_key_pepper",
    "audit_key",
    "tfa_key",
    "alert_webhook_secret",
    "alert_smtp_password",
    "metrics_token",
    "admin_password",
)


def file_setting(name: str) -> str:
    return f"{name}_file"


def secrets_from_files(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (the raw settings input) with each secret whose file is given read
    from that file; ``ValueError`` (a settings error) when unreadable, empty, or given
    both ways."""
    result = dict(values)
    for name in SECRET_SETTINGS:
        path = result.get(file_setting(name))
        if path is None or path == "":
            continue
        if result.get(name) not in (None, ""):
            # Named as the environment spells them (a TOML file's keys are the same
            # names in lower case, without the prefix).
            variable = f"AUTHGATE_{name.upper()}"
            raise ValueError(f"set {variable} or {variable}_FILE, not both")
        result[name] = read_secret_file(Path(path), setting=file_setting(name))
    return result


def read_secret_file(path: Path, *, setting: str) -> str:
    variable = f"AUTHGATE_{setting.upper()}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read {variable} {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{variable} {path} is not UTF-8 text") from None
    value = text.removesuffix("\n").removesuffix("\r")
    if not value:
        raise ValueError(f"{variable} {path} is empty")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by other users; chmod 600 it", path)
    return value
