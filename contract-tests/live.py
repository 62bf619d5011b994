"""A real ``execsvc serve`` process on PostgreSQL and Redis, for the contract and end-to-end tests.

:func:`start_live_server` provisions everything (a PostgreSQL server and a fresh, uniquely named database
migrated with ``execsvc db upgrade``, a Redis), starts ``execsvc serve`` on a free port, waits for ``/readyz``
and creates two tokens through the CLI. :meth:`LiveServer.close` undoes all of it, also after a partial start.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import redis

if __package__ in (None, "") and str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.services import (
    PostgresServer,
    RedisServer,
    create_database,
    drop_database,
    free_port,
    postgres_server,
    redis_server,
)

REPO = Path(__file__).resolve().parents[1]
# The project's venv; else the one running the tests (which has execsvc installed too).
EXECSVC = next(
    (p for p in (REPO / ".venv" / "bin" / "execsvc", Path(sys.executable).parent / "execsvc") if p.exists()),
    REPO / ".venv" / "bin" / "execsvc",
)
HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
CLI_TIMEOUT_SECONDS = 60.0
FEED_INTERVAL_SECONDS = "0.2"

ADMIN_ACCOUNT = "contract"
READER_ACCOUNT = "contract-reader"

T = TypeVar("T")


class LiveServerError(RuntimeError):
    """The live server could not be provisioned or did not become ready."""


def _run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a fresh loop in a worker thread (safe even when a loop runs in this thread)."""

    async def main() -> T:
        return await factory()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-server") as pool:
        return pool.submit(lambda: asyncio.run(main())).result()


def _tail(path: Path, limit: int = 8000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return text if len(text) <= limit else "...\n" + text[-limit:]


@dataclass
class LiveServer:
    """A running ``execsvc serve`` and what it runs on.

    ``admin_token`` has scope ``admin`` on account ``contract``; ``reader_token`` has only ``orders:read`` on
    another account (``contract-reader``).
    """

    base_url: str = ""
    admin_token: str = ""
    reader_token: str = ""
    database_url: str = ""
    redis_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    # Request ids whose logged errors a test provoked on purpose (a known bug's reproduction).
    expected_error_request_ids: set[str] = field(default_factory=set)
    _postgres: PostgresServer | None = None
    _redis: RedisServer | None = None

    @property
    def stderr_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "server.stderr"

    def stderr(self, limit: int = 8000) -> str:
        """The tail of the server's stderr (its structured logs)."""
        return _tail(self.stderr_path, limit) if self.workdir is not None else ""

    def logged_errors(self) -> list[str]:
        """The server's log lines at level error or above: each one is a server-side bug (an unhandled exception
        behind a 500, an unmapped domain error, a crashed background loop)."""
        if self.workdir is None or not self.stderr_path.exists():
            return []
        errors = []
        for line in self.stderr_path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # uvicorn's own plain-text lines
            if not isinstance(record, dict) or record.get("level") not in ("error", "critical", "exception"):
                continue
            if record.get("request_id") not in self.expected_error_request_ids:
                errors.append(line)
        return errors

    def expect_logged_error(self, request_id: str) -> dict[str, str]:
        """Excuse the errors the server logs for ``request_id``; returns the X-Request-ID header to send."""
        self.expected_error_request_ids.add(request_id)
        return {"X-Request-ID": request_id}

    @property
    def tokens(self) -> dict[str, str]:
        return {"admin": self.admin_token, "reader": self.reader_token}

    def auth(self, token: str | None = None) -> dict[str, str]:
        """An ``Authorization`` header for ``token`` (default: the admin token)."""
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run an ``execsvc`` sub-command against the server's database; raise on failure."""
        result = subprocess.run(
            [str(EXECSVC), *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_SECONDS,
            check=False,
        )
        if result.returncode != 0:
            raise LiveServerError(
                f"`execsvc {' '.join(args)}` exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def create_token(self, account: str, scopes: str) -> str:
        """A new token from ``execsvc tokens create`` (its last line of output)."""
        out = self.cli("tokens", "create", "--account", account, "--scopes", scopes).stdout.strip()
        token = out.splitlines()[-1].strip() if out else ""
        if not token.startswith("exs_"):
            raise LiveServerError(f"`execsvc tokens create` printed no token:\n{out}")
        return token

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="execsvc-live-"))
        self._postgres = postgres_server()
        admin_dsn = self._postgres.admin_dsn
        self.database_url = _run_async(lambda: create_database(admin_dsn, prefix="execsvc_contract"))
        self._redis = redis_server()
        self.redis_url = self._redis.url
        self.redis_prefix = f"execsvc-contract-{uuid.uuid4().hex}:"

        env = {k: v for k, v in os.environ.items() if not k.startswith("EXECSVC_")}
        env.update(
            {
                "EXECSVC_DATABASE_URL": self.database_url,
                "EXECSVC_REDIS_URL": self.redis_url,
                "EXECSVC_REDIS_PREFIX": self.redis_prefix,
                "EXECSVC_FEED_INTERVAL_SECONDS": FEED_INTERVAL_SECONDS,
                "EXECSVC_LOG_LEVEL": "info",
                # Backtests the fuzzer queues stay queued: running them would take the CPU the API is tested with.
                "EXECSVC_RUN_BACKTESTS": "false",
                # The fuzzer sends far more than a token may (tests/api/test_request_limits.py tests the 429s).
                "EXECSVC_API_RATE_LIMITS": "off",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env = env
        self.cli("db", "upgrade")

        port = free_port()
        self.base_url = f"http://{HOST}:{port}"
        with self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [str(EXECSVC), "serve", "--host", HOST, "--port", str(port)],
                env=env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()
        self.admin_token = self.create_token(ADMIN_ACCOUNT, "admin")
        self.reader_token = self.create_token(READER_ACCOUNT, "orders:read")

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        last = "no answer yet"
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise LiveServerError(
                        f"`execsvc serve` exited with {self.process.returncode} before it was ready\n"
                        f"stderr:\n{self.stderr()}"
                    )
                try:
                    response = client.get("/readyz")
                except httpx.TransportError as exc:
                    last = repr(exc)
                else:
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text}"
                time.sleep(0.1)
        raise LiveServerError(
            f"`execsvc serve` at {self.base_url} not ready within {READY_TIMEOUT_SECONDS:.0f}s "
            f"(last /readyz: {last})\nstderr:\n{self.stderr()}"
        )

    def stop_process(self) -> None:
        """SIGTERM, wait, then SIGKILL."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()

    def close(self) -> None:
        """Stop the server, drop the database, release the services; safe after a partial start."""
        try:
            self.stop_process()
        finally:
            try:
                if self._postgres is not None and self.database_url:
                    admin_dsn, dsn = self._postgres.admin_dsn, self.database_url
                    _run_async(lambda: drop_database(admin_dsn, dsn))
                if self._redis is not None and getattr(self, "redis_prefix", None):
                    _delete_keys(self._redis.url, self.redis_prefix)
            finally:
                for svc in (self._redis, self._postgres):
                    if svc is not None:
                        svc.close()
                if self.workdir is not None:
                    shutil.rmtree(self.workdir, ignore_errors=True)


def _delete_keys(url: str, prefix: str) -> None:
    """Remove the keys this server wrote (its own prefix)."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def start_live_server() -> LiveServer:
    """Provision and start a live server; on failure everything started so far is undone."""
    server = LiveServer()
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


if __name__ == "__main__":  # by hand: `.venv/bin/python contract-tests/live.py`; runs until Ctrl-C or SIGTERM
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so that `finally` stops the server, drops the database
    live = start_live_server()
    try:
        print(f"base_url={live.base_url}\nadmin={live.admin_token}\nreader={live.reader_token}", flush=True)
        print(f"server log: {live.stderr_path}", flush=True)
        while live.process is not None and live.process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        live.close()
