"""examples/systemd/authgate.service: valid for systemd, and sandboxed.

``systemd-analyze verify`` loads the unit as systemd would (every warning counts as a
failure) and ``systemd-analyze security --offline`` scores its sandbox; both run
without a running systemd, which CI's container does not have. The unit's ExecStart
binary must exist for verify, so the copy checked here points at this environment's
``authgate``. Skipped where systemd-analyze is missing (.ci/run installs systemd).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.processes import AUTHGATE

UNIT = Path(__file__).resolve().parents[1] / "examples" / "systemd" / "authgate.service"
INSTALLED_AUTHGATE = "/opt/authgate/bin/authgate"
# systemd-analyze's overall exposure, times ten: 2.0 or less is its "OK" band's low end.
MAX_EXPOSURE = 20

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def unit_settings(text: str) -> list[tuple[str, str]]:
    return [
        (key.strip(), value.strip())
        for key, _, value in (
            line.partition("=") for line in text.splitlines() if re.match(r"^[A-Za-z]+=", line)
        )
    ]


def checkable_copy(tmp_path: Path, text: str) -> Path:
    assert INSTALLED_AUTHGATE in text
    path = tmp_path / "authgate.service"
    path.write_text(text.replace(INSTALLED_AUTHGATE, str(AUTHGATE)), encoding="utf-8")
    return path


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def security(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--threshold={MAX_EXPOSURE}",
         "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )  # fmt: skip


def test_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    """systemd accepts every line of the unit (no unknown key, no bad value)."""
    checked = verify(checkable_copy(tmp_path, UNIT.read_text(encoding="utf-8")))
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == ""


@pytest.mark.parametrize(
    ("line", "broken"),
    [
        ("ProtectSystem=strict", "ProtectSytem=strict"),
        ("RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "RestrictAddressFamilies=AF_BOGUS"),
    ],
)
def test_verify_reports_a_broken_line(tmp_path: Path, line: str, broken: str) -> None:
    """The check above would notice a typo or a bad value: verify prints a warning."""
    text = UNIT.read_text(encoding="utf-8")
    assert line in text
    checked = verify(checkable_copy(tmp_path, text.replace(line, broken)))
    assert checked.stderr != ""


def test_sandbox_exposure_is_low(tmp_path: Path) -> None:
    """systemd's own score of the sandbox stays at or below 2.0 ("OK")."""
    scored = security(checkable_copy(tmp_path, UNIT.read_text(encoding="utf-8")))
    overall = re.search(r"Overall exposure level for \S+: ([\d.]+)", scored.stdout)
    assert overall is not None, scored.stdout + scored.stderr
    assert scored.returncode == 0, f"exposure {overall.group(1)}:\n{scored.stdout}"


def test_an_unsandboxed_unit_fails_the_exposure_check(tmp_path: Path) -> None:
    """Without its sandboxing lines the same unit scores above the threshold."""
    text = "\n".join(
        line
        for line in UNIT.read_text(encoding="utf-8").splitlines()
        if not re.match(r"^(Protect|Private|Restrict|SystemCall|Capability)", line)
    )
    assert security(checkable_copy(tmp_path, text)).returncode != 0


def test_unit_runs_unprivileged_with_secrets_as_credentials() -> None:
    """The options the deployment relies on are there: its own user and state dir,
    secrets as credentials read through *_FILE settings, no capabilities."""
    settings = unit_settings(UNIT.read_text(encoding="utf-8"))
    for expected in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "authgate"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/var/lib/authgate"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("CapabilityBoundingSet", ""),
        ("SystemCallFilter", "@system-service"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("Environment", "AUTHGATE_API_KEY_PEPPER_FILE=%d/api-key-pepper"),
        ("Environment", "AUTHGATE_CONFIG_FILE=%d/authgate.toml"),
        ("KillSignal", "SIGTERM"),
    ]:
        assert expected in settings, expected
    credentials = {value.split(":")[0] for key, value in settings if key == "LoadCredential"}
    assert credentials == {"authgate.toml", "api-key-pepper"}
    assert not [value for key, value in settings if key == "Environment" and "PASSWORD" in value]


def _syscalls(name: str) -> set[str]:
    """A system call, or every call of a group (``@resources``), as this systemd
    defines the group."""
    if not name.startswith("@"):
        return {name}
    listed = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager", name],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()[1:]
    calls: set[str] = set()
    for line in listed:
        entry = line.strip()
        if entry and not entry.startswith("#"):
            calls |= _syscalls(entry)
    return calls


def test_the_hashing_threads_may_lower_their_priority() -> None:
    """The password-hashing threads call setpriority (or sched_setscheduler for
    SCHED_IDLE) on themselves; @resources, which the unit denies, holds both. Later
    SystemCallFilter lines add to or take from the first one's allow list (systemd.exec)."""
    filters = [value for key, value in unit_settings(UNIT.read_text()) if key == "SystemCallFilter"]
    assert not filters[0].startswith("~"), "the first filter is an allow list"
    allowed: set[str] = set()
    for value in filters:
        calls = set().union(*(_syscalls(name) for name in value.lstrip("~").split()))
        allowed = allowed - calls if value.startswith("~") else allowed | calls
    assert {"setpriority", "sched_setscheduler"} <= allowed
    assert "setrlimit" not in allowed  # the rest of @resources stays denied
    assert "reboot" not in allowed  # and @privileged
