"""The two wheels, built and installed for real into fresh virtual environments.

``scripts/build-wheelhouse`` builds authgate and authgate-sdk from this checkout and
collects their dependencies (constraints.txt); each test installs from that wheelhouse
alone (``--no-index``, no pip configuration), so what pip prints is about our packages.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVER_FRAMEWORKS = ("fastapi", "sqlalchemy", "uvicorn", "argon2-cffi", "alembic")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload,no-any-return]


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both wheels and their dependencies; plus keyring, and a pydantic older than the
    one constraints.txt pins (for the range test)."""
    directory = tmp_path_factory.mktemp("wheelhouse")
    built = run(
        [str(ROOT / "scripts" / "build-wheelhouse"), str(directory)],
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert built.returncode == 0, built.stderr[-4000:]
    for extra in (
        ["--constraint", str(ROOT / "constraints.txt"), "keyring"],
        ["pydantic<2.14"],
    ):
        fetched = run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "-w", str(directory), *extra]
        )
        assert fetched.returncode == 0, fetched.stderr[-4000:]
    return directory


def fresh_venv(path: Path) -> Path:
    venv.create(path, with_pip=True)
    return path / "bin"


def isolated_pip_environment() -> dict[str, str]:
    """No pip configuration from this machine (its extra indexes, find-links)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    environment["PIP_CONFIG_FILE"] = os.devnull
    environment["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return environment


def pip_install(bin_dir: Path, wheelhouse: Path, *requirements: str) -> str:
    """Install from the wheelhouse alone; returns what pip printed on stderr."""
    installed = run(
        [str(bin_dir / "pip"), "install", "--no-index", "--find-links", str(wheelhouse),
         *requirements],
        env=isolated_pip_environment(),
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    return installed.stderr


def installed_names(bin_dir: Path) -> set[str]:
    listed = run([str(bin_dir / "pip"), "list", "--format=freeze"], env=isolated_pip_environment())
    return {line.split("==")[0].lower() for line in listed.stdout.split()}


def python_without_warnings(bin_dir: Path, code: str) -> str:
    """Run ``code`` with every warning an error; returns stdout."""
    result = run([str(bin_dir / "python"), "-W", "error", "-c", code], cwd=bin_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""
    return result.stdout


def wheel(wheelhouse: Path, prefix: str) -> zipfile.ZipFile:
    (path,) = wheelhouse.glob(f"{prefix}-*.whl")
    return zipfile.ZipFile(path)


def checkout_copy(destination: Path) -> Path:
    """The checkout's files (tracked and not ignored), as scripts/build-wheelhouse
    builds from: the build leaves nothing behind in the working tree."""
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    archive = destination.with_suffix(".tar")
    with tarfile.open(archive, "w") as tar:
        for name in filter(None, listed.stdout.split("\0")):
            if (ROOT / name).exists() or (ROOT / name).is_symlink():
                tar.add(ROOT / name, arcname=name, recursive=False)
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="tar")
    return destination


def test_builds_print_no_warning(tmp_path: Path) -> None:
    """Building both wheels prints no warning: no setuptools deprecation (such as the
    licence given as a table), only distutils' routine byte-compiling notice."""
    backend = tmp_path / "backend"
    fetched = run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                   "-d", str(backend), "setuptools>=77"])  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr[-3000:]
    source = checkout_copy(tmp_path / "source")
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--verbose", "--no-deps", "--no-index",
         "--find-links", str(backend), "-w", str(tmp_path / "wheels"), "./clients/python", "."],
        cwd=source,
        env=isolated_pip_environment(),
    )  # fmt: skip
    # (the temporary path holds this test's name, which says "warning")
    output = (built.stdout + built.stderr).replace(str(tmp_path), "<tmp>")
    assert built.returncode == 0, output[-4000:]
    warnings = [
        line
        for line in output.splitlines()
        if re.search(r"warn|deprecat", line, re.IGNORECASE)
        and "byte-compiling is disabled" not in line
    ]
    assert warnings == []
    assert len(list((tmp_path / "wheels").glob("*.whl"))) == 2


def test_the_two_wheels_split_the_package_between_them(wheelhouse: Path) -> None:
    """Every module of src/authgate is in exactly one of the two wheels; the SDK wheel
    holds the client, the guard, py.typed and the licence."""
    server = set(wheel(wheelhouse, "authgate").namelist())
    sdk = set(wheel(wheelhouse, "authgate_sdk").namelist())
    assert server & sdk == set()
    sources = {
        str(path.relative_to(ROOT / "src"))
        for path in (ROOT / "src" / "authgate").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert {name for name in server | sdk if name.endswith(".py")} == sources
    assert {"authgate/py.typed", "authgate/client/__init__.py", "authgate/guard/__init__.py"} <= sdk
    assert "authgate_sdk-0.1.0.dist-info/licenses/LICENSE" in sdk
    assert "authgate-0.1.0.dist-info/licenses/LICENSE" in server
    assert any(name.startswith("authgate/web/templates/") for name in server)
    assert any(name.startswith("authgate/storage/migrations/versions/") for name in server)


def test_sdk_installs_alone_without_the_server(wheelhouse: Path, tmp_path: Path) -> None:
    """authgate-sdk[guard] installs without a warning and without FastAPI, SQLAlchemy,
    uvicorn or Argon2; the SDK, the guard and authgate-client work."""
    bin_dir = fresh_venv(tmp_path / "venv")
    assert pip_install(bin_dir, wheelhouse, "authgate-sdk[guard]") == ""
    names = installed_names(bin_dir)
    assert "authgate-sdk" in names
    assert names.isdisjoint({*SERVER_FRAMEWORKS, "authgate"}), names
    printed = python_without_warnings(
        bin_dir,
        "import authgate, authgate.client, authgate.guard\n"
        "from authgate.guard import Guard, GuardConfig\n"
        "print(authgate.__version__)\n"
        "try:\n    import authgate.settings\nexcept ModuleNotFoundError:\n    print('no server')\n",
    )
    assert printed.split() == ["0.1.0", "no", "server"]
    helped = run([str(bin_dir / "authgate-client"), "--help"])
    assert helped.returncode == 0, helped.stderr
    assert "keys" in helped.stdout
    assert not (bin_dir / "authgate").exists()


def test_sdk_accepts_an_older_pydantic(wheelhouse: Path, tmp_path: Path) -> None:
    """Ranges, not pins: `authgate-sdk[guard,keyring]` with `pydantic<2.14` (an older
    release than the server's lock) resolves."""
    bin_dir = fresh_venv(tmp_path / "venv")
    assert pip_install(bin_dir, wheelhouse, "authgate-sdk[guard,keyring]", "pydantic<2.14") == ""
    version = python_without_warnings(bin_dir, "import pydantic; print(pydantic.VERSION)")
    assert version.startswith("2.13."), version
    python_without_warnings(bin_dir, "import authgate.client, authgate.guard, keyring")


def test_server_installs_without_a_warning(wheelhouse: Path, tmp_path: Path) -> None:
    """authgate[postgres,redis] with the lock installs silently; every module imports
    with warnings as errors; both commands run."""
    bin_dir = fresh_venv(tmp_path / "venv")
    constraints = str(wheelhouse / "constraints.txt")
    assert pip_install(bin_dir, wheelhouse, "-c", constraints, "authgate[postgres,redis]") == ""
    python_without_warnings(
        bin_dir,
        "import pkgutil, authgate\n"
        "for module in pkgutil.walk_packages(authgate.__path__, 'authgate.'):\n"
        "    # __main__ runs the CLI; migrations are scripts that alembic runs\n"
        "    if module.name != 'authgate.__main__' and '.migrations' not in module.name:\n"
        "        __import__(module.name)\n",
    )
    version = run([str(bin_dir / "authgate"), "version"])
    assert version.stdout.strip() == "0.1.0", version.stderr
    assert run([str(bin_dir / "authgate-client"), "--help"]).returncode == 0
