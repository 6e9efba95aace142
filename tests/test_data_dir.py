"""The data directory does not depend on where you stand: commands other than `serve`
refuse to create one unless `--init`, and README's recovery recipe works from any
directory (real `authgate` processes)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from tests.processes import AUTHGATE, TEST_SERVER_ENVIRONMENT, AuthgateServer
from tests.test_cli import authenticate

NEW_ADMIN_PASSWORD = "recovered-passphrase-2026"


def run_authgate(
    cwd: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")}
    environment.update(TEST_SERVER_ENVIRONMENT)
    environment.update(env or {})
    return subprocess.run(
        [str(AUTHGATE), *args],
        cwd=cwd,
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_recovery_recipe_works_from_another_directory(tmp_path: Path) -> None:
    """`make run` keeps ./authgate-data in the checkout; from elsewhere, the command
    without the data dir refuses (and creates nothing), and README's recipe with
    `--data-dir` resets the first admin's password of that installation."""
    checkout, elsewhere = tmp_path / "checkout", tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = AuthgateServer(checkout, {})  # the default data dir, as `make run`
    try:
        server.wait_until_up()
    finally:
        server.stop()
    data_dir = checkout / "authgate-data"
    assert (data_dir / "authgate.db").is_file()
    assert f"Data dir:   {data_dir}" in server.log_path.read_text(encoding="utf-8")

    lost = run_authgate(elsewhere, "users", "set-password", "admin", "--password-stdin",
                        stdin=f"{NEW_ADMIN_PASSWORD}\n")  # fmt: skip
    assert lost.returncode == 2, lost.stdout + lost.stderr
    assert f"no data directory at {elsewhere / 'authgate-data'}" in lost.stderr
    assert "--data-dir" in lost.stderr
    assert "Traceback" not in lost.stderr
    assert list(elsewhere.iterdir()) == []  # no second installation

    recipe = run_authgate(
        elsewhere,
        "--data-dir",
        str(data_dir),
        "users",
        "set-password",
        "admin",
        "--password-stdin",
        stdin=f"{NEW_ADMIN_PASSWORD}\n",
    )
    assert recipe.returncode == 0, recipe.stdout + recipe.stderr
    assert list(elsewhere.iterdir()) == []
    assert authenticate(data_dir, "admin", NEW_ADMIN_PASSWORD) == "admin"


def test_the_variable_works_from_anywhere_too(tmp_path: Path) -> None:
    """AUTHGATE_DATA_DIR names an existing installation the same way."""
    data_dir = tmp_path / "installation"
    created = run_authgate(tmp_path, "--data-dir", str(data_dir), "--init", "migrate")
    assert created.returncode == 0, created.stderr
    listed = run_authgate(Path("/"), "users", "list", env={"AUTHGATE_DATA_DIR": str(data_dir)})
    assert listed.returncode == 0, listed.stderr


def test_init_creates_a_private_data_dir(tmp_path: Path) -> None:
    """`--init` is the explicit way to start a new installation from a command."""
    data_dir = tmp_path / "new" / "authgate-data"
    refused = run_authgate(tmp_path, "--data-dir", str(data_dir), "migrate")
    assert refused.returncode == 2
    assert not data_dir.parent.exists()
    created = run_authgate(tmp_path, "--data-dir", str(data_dir), "--init", "migrate")
    assert created.returncode == 0, created.stderr
    assert (data_dir / "authgate.db").is_file()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
