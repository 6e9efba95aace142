"""P4: authgate's key-authenticated endpoint against Django REST framework +
djangorestframework-api-key doing the same job, in one run.

The peer is bench/drf_peer/, a Django project of our own (settings, one URL, one
view): ``GET /api/protected`` with the ``HasAPIKey`` permission, answered by gunicorn
(1 sync worker) from a SQLite database holding one key made by
``APIKey.objects.create_key``. Its packages (bench/drf_peer/requirements.txt, exact
pins) live in their own virtual environment outside the repository,
``$XDG_CACHE_HOME/authgate-bench/drf-venv`` (default ``~/.cache/...``), created on the
first run and reused while the pins and the Python version stay the same.

authgate's side is what P1 measures (bench/auth_overhead.py): ``authgate serve`` (1
uvicorn worker, default settings), ``GET /api/authenticate`` with an API key in
``Authorization: Bearer``.

Both servers are pinned to CPU 0 and wrk (-t1 -c32) to CPU 1; each round runs both,
alternating which goes first. Ratio = authgate req/s / peer req/s, the median of the
per-round ratios (target >= 5); CPU time per request comes from /proc (authgate's one
process; gunicorn's worker process).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2

from auth_overhead import create_api_key
from report import Row, add_output_arguments, at_least, print_rows, write_json
from stacks import pinned

from harness import LoadResult, Server, authgate_server, compare, free_port, require_wrk, wrk

HERE = Path(__file__).resolve().parent
PEER = HERE / "drf_peer"
REQUIREMENTS = PEER / "requirements.txt"
TARGET = 5.0
PEER_LABEL = "DRF + drf-api-key (gunicorn, 1 sync worker)"
AUTHGATE_LABEL = "authgate API key (Bearer, 1 uvicorn worker)"


def peer_venv() -> Path:
    """The peer's virtual environment, (re)built when its pins or the Python changed."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "authgate-bench" / "drf-venv"
    wanted = f"{sys.version}\n{REQUIREMENTS.read_text()}"
    stamp = venv / "authgate-bench-requirements.txt"
    if (venv / "bin" / "gunicorn").exists() and stamp.exists() and stamp.read_text() == wanted:
        return venv
    print(f"Installing the peer's pinned packages into {venv} (once)", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(REQUIREMENTS),
        ],
        check=True,
        timeout=600,
    )
    stamp.write_text(wanted)
    return venv


@dataclass(frozen=True)
class Peer:
    url: str
    key: str
    worker_pid: int  # gunicorn's one worker, where the requests are served


def _peer_environment(workdir: Path) -> dict[str, str]:
    # The peer must not see authgate's virtual environment or its import path.
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
    }
    return {
        **env,
        "PYTHONPATH": str(HERE),
        "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ in bench/drf_peer/
        "DJANGO_SETTINGS_MODULE": "drf_peer.settings",
        "DRF_PEER_DATABASE": str(workdir / "peer.sqlite3"),
        "DRF_PEER_SECRET_KEY": secrets.token_urlsafe(50),
    }


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return children


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def drf_peer(*, cpu: int = 0) -> Iterator[Peer]:
    """gunicorn serving bench/drf_peer on a free loopback port, with a fresh SQLite
    database and one API key; stopped on exit."""
    venv = peer_venv()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="authgate-bench-drf-") as directory:
        workdir = Path(directory)
        env = _peer_environment(workdir)
        prepared = subprocess.run(
            [str(venv / "bin" / "python"), str(PEER / "prepare.py")],
            env=env,
            cwd=workdir,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        key: str = json.loads(prepared.stdout.splitlines()[-1])["key"]
        log = workdir / "gunicorn.log"
        command = [
            str(venv / "bin" / "gunicorn"),
            "--workers=1",
            "--worker-class=sync",
            f"--bind=127.0.0.1:{port}",
            "--log-level=warning",
            "--no-control-socket",
            "drf_peer.wsgi:application",
        ]
        with log.open("wb") as output:
            process = subprocess.Popen(
                pinned(command, cpu),
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}/api/protected"
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"gunicorn exited early:\n{log.read_text('replace')}")
                with contextlib.suppress(httpx2.HTTPError):
                    if httpx2.get(url, headers=_peer_headers(key), timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not start:\n{log.read_text('replace')}")
                time.sleep(0.1)
            (worker,) = _children(process.pid)
            yield Peer(url, key, worker)
        finally:
            _stop(process)


def _peer_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Api-Key {key}"}


def _tampered(key: str) -> str:
    return key[:-1] + ("A" if key[-1] != "A" else "B")


def check_both_authenticate(peer: Peer, server: Server, api_key: str) -> None:
    """Both sides really check the key: no key and a wrong key are refused, the right
    one accepted. Otherwise the comparison would time a server that lets anyone in."""

    def status(url: str, authorization: str | None) -> int:
        headers = {"Authorization": authorization} if authorization else {}
        return httpx2.get(url, headers=headers, timeout=10).status_code

    whoami = f"{server.base_url}/api/authenticate"
    answers = {
        "peer, no key": (status(peer.url, None), 403),
        "peer, wrong key": (status(peer.url, f"Api-Key {_tampered(peer.key)}"), 403),
        "peer, its key": (status(peer.url, f"Api-Key {peer.key}"), 200),
        "authgate, no key": (status(whoami, None), 401),
        "authgate, wrong key": (status(whoami, f"Bearer {_tampered(api_key)}"), 401),
        "authgate, its key": (status(whoami, f"Bearer {api_key}"), 200),
    }
    wrong = {name: got for name, (got, expected) in answers.items() if got != expected}
    if wrong:
        raise RuntimeError(f"unexpected answers, figures would be meaningless: {wrong}")


def measure(*, seconds: int, rounds: int, warmup: int) -> list[Row]:
    with authgate_server() as server, drf_peer(cpu=0) as peer:
        api_key = create_api_key(server, server.login())
        check_both_authenticate(peer, server, api_key)
        whoami = f"{server.base_url}/api/authenticate"
        authgate_headers = {"Authorization": f"Bearer {api_key}"}
        wrk(peer.url, seconds=warmup, headers=_peer_headers(peer.key))
        wrk(whoami, seconds=warmup, headers=authgate_headers)

        def load(url: str, headers: dict[str, str], pid: int) -> Callable[[], LoadResult]:
            return lambda: wrk(url, seconds=seconds, headers=headers, server_pid=pid)

        print("P4: authgate vs DRF + djangorestframework-api-key (CPU 0; wrk -t1 -c32, CPU 1)")
        results = compare(
            (PEER_LABEL, load(peer.url, _peer_headers(peer.key), peer.worker_pid)),
            {AUTHGATE_LABEL: load(whoami, authgate_headers, server.pid)},
            rounds=rounds,
        )
    result = results[AUTHGATE_LABEL]
    if result.first.non_2xx or result.second.non_2xx:
        raise RuntimeError("some requests failed; figures are meaningless")
    detail = (
        f"{rounds} rounds x {seconds} s, wrk -t1 -c32 on CPU 1, both servers on CPU 0; "
        "medians; ratio = median of per-round ratios"
    )
    rows: list[Row] = []
    for label, figures in ((PEER_LABEL, result.second), (AUTHGATE_LABEL, result.first)):
        rows += [
            Row("P4", f"{label} req/s", figures.requests_per_second, "req/s", detail=detail),
            Row("P4", f"{label} p99", figures.p99_ms, "ms", detail=detail),
        ]
        if figures.cpu_us_per_request is not None:
            rows.append(
                Row("P4", f"{label} CPU/req", figures.cpu_us_per_request, "us", detail=detail)
            )
    cpu = f", by CPU per request {result.cpu_ratio:.2f}" if result.cpu_ratio else ""
    print(f"  authgate / peer: req/s ratio {result.ratio:.2f}{cpu}   (target >= {TARGET:g})")
    rows.append(
        at_least(
            "P4",
            "authgate key-authenticated / DRF + djangorestframework-api-key, req/s",
            result.ratio,
            TARGET,
            unit="x",
            detail=detail,
        )
    )
    if result.cpu_ratio:
        rows.append(
            Row(
                "P4",
                "DRF + djangorestframework-api-key / authgate, CPU per request",
                result.cpu_ratio,
                "x",
                detail=detail,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (each runs both)")
    add_output_arguments(parser)
    args = parser.parse_args()
    require_wrk()
    seconds, rounds, warmup = (2, 2, 1) if args.quick else (args.seconds, args.rounds, 2)
    rows = measure(seconds=seconds, rounds=rounds, warmup=warmup)
    print_rows(rows)
    write_json(args.json_out, rows)


if __name__ == "__main__":
    main()
