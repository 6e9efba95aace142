"""compose.yaml: valid for compose, secrets only through files, and the secrets that
scripts/compose-secrets makes are ones authgate accepts.

The stack itself is not started here: its PostgreSQL, Redis and nginx images come from
a registry, which CI cannot reach. The authgate image is started against a real
PostgreSQL and Redis by tests/container/test_image.py; the nginx configuration is the
example that tests/test_nginx_forward_auth.py runs, with two addresses changed (checked
below).
"""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
import tempfile
import tomllib
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from authgate.settings import Settings
from authgate.storage.keystore import load_or_create_pepper

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
FORWARD_AUTH = ROOT / "examples" / "nginx" / "authgate-forward-auth.conf"
COMPOSE_NGINX = ROOT / "examples" / "compose" / "nginx-forward-auth.conf"
DEMO_API = ROOT / "examples" / "compose" / "demo-api.conf"
SECRET_WORDS = ("PASSWORD", "PEPPER", "SECRET", "DATABASE_URL", "REDIS_URL", "TOKEN")


def compose() -> dict:  # type: ignore[type-arg]
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def make_secrets(directory: Path) -> Path:
    made = subprocess.run(
        [str(ROOT / "scripts" / "compose-secrets"), str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return directory


def project_copy(tmp_path: Path, text: str) -> Path:
    """compose.yaml (as ``text``) with the files it mounts, in a directory of its own."""
    (tmp_path / "compose.yaml").write_text(text, encoding="utf-8")
    shutil.copytree(ROOT / "examples" / "compose", tmp_path / "examples" / "compose")
    make_secrets(tmp_path / "secrets")
    return tmp_path


def compose_config(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker-compose", *args, "config", "--quiet"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")},
    )


needs_docker_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not installed (.ci/run installs it)",
)


@needs_docker_compose
def test_compose_file_is_valid(tmp_path: Path) -> None:
    """docker-compose's schema check accepts the file, with and without nginx."""
    project = project_copy(tmp_path, COMPOSE.read_text(encoding="utf-8"))
    for profile in ([], ["--profile", "nginx"]):
        checked = compose_config(project, *profile)
        assert checked.returncode == 0, checked.stderr


@needs_docker_compose
def test_compose_check_reports_a_typo(tmp_path: Path) -> None:
    """The check above would notice a misspelt key."""
    text = COMPOSE.read_text(encoding="utf-8").replace("    healthcheck:", "    healtcheck:", 1)
    assert compose_config(project_copy(tmp_path, text)).returncode != 0


def test_secrets_reach_containers_only_as_files() -> None:
    """No secret in any environment: each *_FILE names a mounted secret of its service,
    and every secret is a file under ./secrets."""
    document = compose()
    declared = document["secrets"]
    assert all(spec["file"].startswith("./secrets/") for spec in declared.values()), declared
    for name, service in document["services"].items():
        environment = service.get("environment", {})
        mounted = set(service.get("secrets", []))
        for variable, value in environment.items():
            if variable.endswith("_FILE"):
                assert value.startswith("/run/secrets/"), (name, variable)
                assert value.removeprefix("/run/secrets/") in mounted, (name, variable)
            else:
                assert not any(word in variable for word in SECRET_WORDS), (name, variable)
    assert document["services"]["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"]
    assert document["services"]["nginx"]["profiles"] == ["nginx"]
    assert document["networks"]["backend"]["internal"] is True


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root")
def test_compose_secrets_work_for_rootless_podman(tmp_path: Path) -> None:
    """As an unprivileged user with rootless podman, a file given to a container uid
    (``podman unshare chown``) is no longer readable by that user: the config with the
    database password must be written before the password file is given away. A
    stand-in ``podman`` makes each given file unreadable, as the real one does."""
    work = Path(tempfile.mkdtemp(prefix="authgate-rootless-"))
    try:
        bin_dir = work / "bin"
        bin_dir.mkdir()
        podman = bin_dir / "podman"
        podman.write_text(
            '#!/bin/sh\n[ "$1" = unshare ] || exit 1\nshift\n'
            'case "$1" in true) exit 0 ;; chown) chmod 000 "$3" ;; *) exit 1 ;; esac\n',
            encoding="utf-8",
        )
        podman.chmod(0o755)
        script = work / "compose-secrets"
        shutil.copy(ROOT / "scripts" / "compose-secrets", script)
        work.chmod(0o777)
        made = subprocess.run(
            [
                str(shutil.which("runuser")),
                "-u",
                "nobody",
                "--",
                str(script),
                str(work / "secrets"),
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=work,
            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(work)},
        )
        assert made.returncode == 0, made.stderr
        secrets = work / "secrets"
        config = tomllib.loads((secrets / "authgate.toml").read_text(encoding="utf-8"))
        password = (secrets / "postgres_password").read_text(encoding="utf-8").strip()
        assert make_url(config["database_url"]).password == password
        assert config["public_url"] == "http://127.0.0.1:8080"  # compose.yaml's port
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_compose_secrets_are_private_and_accepted_by_authgate(tmp_path: Path) -> None:
    """scripts/compose-secrets makes a database URL with the PostgreSQL password, a
    pepper authgate loads, and a config authgate's settings accept; 0400 files in a
    0700 directory; running it again changes nothing."""
    directory = make_secrets(tmp_path / "secrets")
    files = {path.name: path for path in directory.iterdir()}
    assert set(files) == {"postgres_password", "api_key_pepper", "authgate.toml"}
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o400
    if os.geteuid() == 0:  # the container users that read them
        owners = {name: path.stat().st_uid for name, path in files.items()}
        assert owners == {"postgres_password": 999, "api_key_pepper": 10001, "authgate.toml": 10001}
    before = {name: path.read_bytes() for name, path in files.items()}

    config = tomllib.loads(files["authgate.toml"].read_text(encoding="utf-8"))
    url = make_url(config["database_url"])
    assert url.password == files["postgres_password"].read_text(encoding="utf-8").strip()
    assert (url.host, url.database, url.username) == ("postgres", "authgate", "authgate")
    settings = Settings(
        config_file=files["authgate.toml"], api_key_pepper_file=files["api_key_pepper"]
    )
    assert settings.effective_database_url == config["database_url"]
    pepper = load_or_create_pepper(None, files["api_key_pepper"], tmp_path / "unused")
    assert pepper == base64.b64decode(files["api_key_pepper"].read_text(encoding="utf-8"))
    assert len(pepper) == 32

    make_secrets(directory)
    assert {name: path.read_bytes() for name, path in files.items()} == before


def test_compose_nginx_is_the_tested_example_with_two_addresses_changed() -> None:
    """nginx in compose runs the forward-auth configuration tested against a real nginx
    (tests/test_nginx_forward_auth.py), only authgate's address and its own differ."""
    body = COMPOSE_NGINX.read_text(encoding="utf-8").split("\n\n", 1)[1]
    expected = (
        FORWARD_AUTH.read_text(encoding="utf-8")
        .replace("server 127.0.0.1:8080;", "server authgate:8080;")
        .replace("listen 127.0.0.1:8000;", "listen 8000;")
    )
    assert body == expected
    assert "listen 127.0.0.1:9000;" in DEMO_API.read_text(encoding="utf-8")  # its upstream
    ip = compose()["services"]["nginx"]["networks"]["edge"]["ipv4_address"]
    assert compose()["x-authgate"]["environment"]["AUTHGATE_TRUSTED_PROXIES"] == ip


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_compose_nginx_configuration_parses(tmp_path: Path) -> None:
    """`nginx -t` accepts the two files (authgate's host name, which only resolves
    inside compose, replaced by loopback)."""
    (tmp_path / "forward-auth.conf").write_text(
        COMPOSE_NGINX.read_text(encoding="utf-8").replace("authgate:8080", "127.0.0.1:8080"),
        encoding="utf-8",
    )
    shutil.copy(DEMO_API, tmp_path / "demo-api.conf")
    user = "user root;" if os.geteuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(
        f"{user}\npid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\n"
        "events { }\nhttp {\n"
        f"    access_log off;\n    include {tmp_path / 'forward-auth.conf'};\n"
        f"    include {tmp_path / 'demo-api.conf'};\n}}\n",
        encoding="utf-8",
    )
    checked = subprocess.run(
        [
            shutil.which("nginx") or "nginx",
            "-t",
            "-p",
            str(tmp_path),
            "-c",
            str(tmp_path / "nginx.conf"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
