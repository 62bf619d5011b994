"""Provisioning of PostgreSQL and Redis for the test suite.

Discovery order for PostgreSQL (:func:`postgres_server`):

1. ``EXECSVC_TEST_POSTGRES_DSN`` (an admin DSN, e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``);
2. a server already listening on ``127.0.0.1:5432`` that accepts user ``postgres`` (then the
   current OS user) without a password;
3. a throwaway cluster started from local binaries (``initdb``/``postgres`` on ``PATH`` or under
   ``/usr/lib/postgresql/*/bin``) in a temporary directory on a free port;
4. otherwise :class:`ProvisioningError`.

Redis (:func:`redis_server`) works the same way with ``EXECSVC_TEST_REDIS_URL``,
``127.0.0.1:6379`` and a throwaway ``redis-server``.

Throwaway servers are stopped and their directories removed by ``close()`` (also when used as a
context manager, and as a last resort at interpreter exit).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import getpass
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg
import redis

__all__ = [
    "POSTGRES_DSN_ENV",
    "REDIS_URL_ENV",
    "PostgresServer",
    "ProvisioningError",
    "RedisServer",
    "create_database",
    "drop_database",
    "find_postgres_bindir",
    "find_redis_server",
    "free_port",
    "postgres_server",
    "redis_server",
    "start_throwaway_postgres",
    "start_throwaway_redis",
]

POSTGRES_DSN_ENV = "EXECSVC_TEST_POSTGRES_DSN"
REDIS_URL_ENV = "EXECSVC_TEST_REDIS_URL"

LOCAL_HOST = "127.0.0.1"
DEFAULT_POSTGRES_PORT = 5432
DEFAULT_REDIS_PORT = 6379
PROBE_TIMEOUT = 2.0
STARTUP_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 15.0

POSTGRES_INSTALL_HINT = (
    "install PostgreSQL (Debian: apt-get install postgresql) or set "
    f"{POSTGRES_DSN_ENV}=postgresql://USER@HOST:PORT/postgres"
)
REDIS_INSTALL_HINT = f"install Redis (Debian: apt-get install redis-server) or set {REDIS_URL_ENV}=redis://HOST:PORT"

_UNPRIVILEGED_USERS = ("nobody", "postgres")
_IDENTIFIER_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
# Unix-domain socket paths are limited to 107 bytes; leave room for "/.s.PGSQL.NNNNN".
_MAX_SOCKET_DIR_LEN = 90

T = TypeVar("T")


class ProvisioningError(RuntimeError):
    """A required test service could not be found or started."""


# --------------------------------------------------------------------------- helpers


def wait_ready(base: str, seconds: float = 30, alive: Callable[[], bool] = lambda: True) -> bool:
    """Whether ``base``/readyz answered 200 within ``seconds`` (giving up early once ``alive()`` is false)."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and alive():
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCAL_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a fresh event loop in a worker thread.

    A worker thread keeps this usable from synchronous code that is itself called while an event
    loop is running (e.g. from inside an async fixture).
    """

    async def main() -> T:
        return await factory()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="svc-probe") as pool:
        return pool.submit(lambda: asyncio.run(main())).result()


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


async def _pg_probe(dsn: str, connect_timeout: float) -> None:
    conn = await asyncpg.connect(dsn, timeout=connect_timeout)
    try:
        await conn.fetchval("SELECT 1", timeout=connect_timeout)
    finally:
        await conn.close(timeout=connect_timeout)


def _pg_answers(dsn: str, timeout: float = PROBE_TIMEOUT) -> Exception | None:
    """Return ``None`` when ``dsn`` accepts a connection, else the error."""
    try:
        _run_async(lambda: _pg_probe(dsn, timeout))
    except Exception as exc:
        return exc
    return None


def _pg_ready(dsn: str) -> bool:
    return _pg_answers(dsn, timeout=1.0) is None


def _redis_answers(url: str, timeout: float = PROBE_TIMEOUT) -> Exception | None:
    """Return ``None`` when the Redis at ``url`` answers PING, else the error."""
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout) as client:
            if client.ping() is not True:
                return ProvisioningError(f"unexpected PING reply from {_redact(url)}")
    except Exception as exc:
        return exc
    return None


def _redis_ready(url: str) -> bool:
    return _redis_answers(url, timeout=1.0) is None


def _current_user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:
        return None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _others_can_traverse(path: Path) -> bool:
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in (path, *path.parents))


def _unprivileged_account() -> pwd.struct_passwd:
    for name in _UNPRIVILEGED_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ProvisioningError(
        "running as root, and PostgreSQL refuses to run as root, but none of the users "
        f"{', '.join(_UNPRIVILEGED_USERS)} exists to run a throwaway cluster as; run the tests as a "
        f"non-root user or set {POSTGRES_DSN_ENV}"
    )


def _make_tempdir(prefix: str, owner: pwd.struct_passwd | None = None) -> Path:
    parent = Path(tempfile.gettempdir())
    if owner is not None and not _others_can_traverse(parent):
        fallback = Path("/tmp")
        if not (fallback.is_dir() and _others_can_traverse(fallback)):
            raise ProvisioningError(
                f"temporary directory {parent} is not reachable by user {owner.pw_name}; "
                "set TMPDIR to a world-traversable directory"
            )
        parent = fallback
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    return base


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({"LC_ALL": "C", "LANG": "C"})
    if extra:
        env.update(extra)
    return env


def _stop_process(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
    else:
        proc.wait()


def _cleanup(proc: subprocess.Popen[bytes] | None, sig: int, base: Path | None) -> None:
    """Stop a throwaway server process and remove its directory (idempotent via weakref.finalize)."""
    try:
        _stop_process(proc, sig)
    finally:
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)


def _wait_until(proc: subprocess.Popen[bytes], ready: Callable[[], bool], server: _Service) -> bool:
    """Poll ``ready`` while ``proc`` runs; on failure stop ``proc`` but keep ``server``'s directory."""
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            if ready():
                return True
            time.sleep(0.1)
    except BaseException:
        server.close()
        raise
    # Keep the directory (and its log) for the error message or the next attempt.
    server._finalizer.detach()
    _stop_process(proc, server.stop_signal)
    return False


class _Service:
    """Common lifecycle for a discovered or throwaway server."""

    source: str

    def __init__(
        self,
        *,
        source: str,
        process: subprocess.Popen[bytes] | None = None,
        base_dir: Path | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.source = source
        self.process = process
        self.base_dir = base_dir
        self.stop_signal = stop_signal
        self._finalizer = weakref.finalize(self, _cleanup, process, stop_signal, base_dir)

    @property
    def throwaway(self) -> bool:
        """True when this object started the server and ``close()`` stops it."""
        return self.process is not None

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Stop a throwaway server and delete its directory; a no-op for an existing server."""
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- PostgreSQL


class PostgresServer(_Service):
    """A PostgreSQL server to run tests against.

    ``admin_dsn`` is a ``postgresql://user@host:port/postgres`` DSN with the right to create and drop
    databases. ``source`` is ``"env"``, ``"local"`` or ``"throwaway"``.
    """

    def __init__(
        self,
        admin_dsn: str,
        *,
        source: str,
        process: subprocess.Popen[bytes] | None = None,
        base_dir: Path | None = None,
    ) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: it disconnects clients instead of waiting for them.
        super().__init__(source=source, process=process, base_dir=base_dir, stop_signal=signal.SIGINT)
        self.admin_dsn = admin_dsn

    def __repr__(self) -> str:
        return f"PostgresServer({_redact(self.admin_dsn)!r}, source={self.source!r})"


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin -> numeric version, so that 16 sorts after 9.6.
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)


def find_postgres_bindir() -> Path | None:
    """Return a directory holding both ``initdb`` and ``postgres``, or ``None``.

    ``PATH`` comes first, then the newest ``/usr/lib/postgresql/*/bin`` (Debian/Ubuntu layout).
    """
    candidates: list[Path] = []
    for tool in ("initdb", "postgres", "pg_ctl"):
        found = shutil.which(tool)
        if found:
            candidates.append(Path(found).resolve().parent)
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True))
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "postgres")):
            return bindir
    return None


def _run_checked(args: list[str], *, log: Path, what: str, **kwargs: Any) -> None:
    with log.open("ab") as out:
        result = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, check=False, **kwargs)
    if result.returncode != 0:
        raise ProvisioningError(f"{what} failed (exit {result.returncode}):\n{_tail(log)}")


def start_throwaway_postgres(bindir: Path | None = None) -> PostgresServer:
    """Start a private PostgreSQL cluster from local binaries and return it.

    The cluster lives in a fresh temporary directory, listens on 127.0.0.1 on a free port (its unix
    socket is inside the temporary directory), runs with ``fsync=off`` and trust authentication for
    user ``postgres``. When running as root it runs as an unprivileged user (PostgreSQL refuses root).
    """
    bindir = bindir or find_postgres_bindir()
    if bindir is None:
        raise ProvisioningError(
            "no PostgreSQL server binaries (initdb, postgres) found on PATH or under "
            f"/usr/lib/postgresql/*/bin; {POSTGRES_INSTALL_HINT}"
        )
    run_as = _unprivileged_account() if os.geteuid() == 0 else None
    user_kwargs: dict[str, Any] = {}
    if run_as is not None:
        user_kwargs = {"user": run_as.pw_uid, "group": run_as.pw_gid, "extra_groups": []}

    base = _make_tempdir("execsvc-pg-", run_as)
    try:
        data = base / "data"
        log = base / "postgres.log"
        env = _child_env({"HOME": str(base)})
        _run_checked(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-N",  # no fsync: the cluster is thrown away
            ],
            log=log,
            what=f"{bindir / 'initdb'}",
            env=env,
            cwd=base,
            **user_kwargs,
        )
        socket_dir = str(base) if len(str(base)) <= _MAX_SOCKET_DIR_LEN else ""
        last_error = ""
        for _attempt in range(3):
            port = free_port()
            with log.open("ab") as out:
                proc = subprocess.Popen(
                    [
                        str(bindir / "postgres"),
                        "-D",
                        str(data),
                        "-p",
                        str(port),
                        "-c",
                        f"listen_addresses={LOCAL_HOST}",
                        "-c",
                        f"unix_socket_directories={socket_dir}",
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                        "-c",
                        "max_connections=200",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=base,
                    start_new_session=True,
                    **user_kwargs,
                )
            dsn = f"postgresql://postgres@{LOCAL_HOST}:{port}/postgres"
            server = PostgresServer(dsn, source="throwaway", process=proc, base_dir=base)
            if _wait_until(proc, functools.partial(_pg_ready, dsn), server):
                return server
            last_error = _tail(log)
            if "already in use" not in last_error:
                break
        raise ProvisioningError(f"throwaway PostgreSQL from {bindir} did not start:\n{last_error}")
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise


def postgres_server() -> PostgresServer:
    """Find or start a PostgreSQL server (see the module docstring for the order)."""
    env_dsn = os.environ.get(POSTGRES_DSN_ENV)
    if env_dsn:
        error = _pg_answers(env_dsn)
        if error is not None:
            raise ProvisioningError(f"{POSTGRES_DSN_ENV}={_redact(env_dsn)} does not accept connections: {error!r}")
        return PostgresServer(env_dsn, source="env")

    users = ["postgres"]
    me = _current_user()
    if me and me not in users:
        users.append(me)
    errors: list[str] = []
    for user in users:
        dsn = f"postgresql://{quote(user, safe='')}@{LOCAL_HOST}:{DEFAULT_POSTGRES_PORT}/postgres"
        error = _pg_answers(dsn)
        if error is None:
            return PostgresServer(dsn, source="local")
        errors.append(f"{dsn}: {error!r}")

    if find_postgres_bindir() is None:
        raise ProvisioningError(
            "no PostgreSQL available for the tests: nothing accepted a connection "
            f"({'; '.join(errors)}) and no server binaries were found; {POSTGRES_INSTALL_HINT}"
        )
    return start_throwaway_postgres()


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"expected a postgresql:// URL, got {_redact(dsn)!r}")
    return urlunsplit(parts._replace(path="/" + quote(database, safe="")))


def _database_name(dsn: str) -> str:
    name = unquote(urlsplit(dsn).path.lstrip("/"))
    if not name:
        raise ValueError(f"DSN {_redact(dsn)!r} names no database")
    return name


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def create_database(admin_dsn: str, prefix: str = "execsvc_test") -> str:
    """Create a uniquely named, empty database and return a DSN for it."""
    if not _IDENTIFIER_RE.match(prefix) or len(prefix) > 40:
        raise ValueError(f"database prefix must be a short lower-case identifier, got {prefix!r}")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(f"CREATE DATABASE {_quote_ident(name)}")
    finally:
        await conn.close()
    return _with_database(admin_dsn, name)


async def drop_database(admin_dsn: str, dsn: str) -> None:
    """Drop the database named by ``dsn`` (if it exists), disconnecting its sessions first."""
    name = _database_name(dsn)
    if name in {"postgres", "template0", "template1", _database_name(admin_dsn)}:
        raise ValueError(f"refusing to drop database {name!r}")
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        if conn.get_server_version().major >= 13:
            await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
        else:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)}")
    finally:
        await conn.close()


# --------------------------------------------------------------------------- Redis


class RedisServer(_Service):
    """A Redis server to run tests against; ``url`` is ``redis://host:port``.

    ``source`` is ``"env"``, ``"local"`` or ``"throwaway"``.
    """

    def __init__(
        self,
        url: str,
        *,
        source: str,
        process: subprocess.Popen[bytes] | None = None,
        base_dir: Path | None = None,
    ) -> None:
        super().__init__(source=source, process=process, base_dir=base_dir, stop_signal=signal.SIGTERM)
        self.url = url

    def __repr__(self) -> str:
        return f"RedisServer({_redact(self.url)!r}, source={self.source!r})"


def find_redis_server() -> str | None:
    """Return the path of a ``redis-server`` executable, or ``None``."""
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def start_throwaway_redis(executable: str | None = None) -> RedisServer:
    """Start a private, non-persistent ``redis-server`` on a free 127.0.0.1 port and return it."""
    executable = executable or find_redis_server()
    if executable is None:
        raise ProvisioningError(f"no redis-server executable found on PATH; {REDIS_INSTALL_HINT}")
    base = _make_tempdir("execsvc-redis-")
    try:
        log = base / "redis.log"
        last_error = ""
        for _attempt in range(3):
            port = free_port()
            with log.open("ab") as out:
                proc = subprocess.Popen(
                    [
                        executable,
                        "--port",
                        str(port),
                        "--bind",
                        LOCAL_HOST,
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--daemonize",
                        "no",
                        "--dir",
                        str(base),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=_child_env(),
                    cwd=base,
                    start_new_session=True,
                )
            url = f"redis://{LOCAL_HOST}:{port}"
            server = RedisServer(url, source="throwaway", process=proc, base_dir=base)
            if _wait_until(proc, functools.partial(_redis_ready, url), server):
                return server
            last_error = _tail(log)
            if "already in use" not in last_error:
                break
        raise ProvisioningError(f"throwaway redis-server ({executable}) did not start:\n{last_error}")
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise


def redis_server() -> RedisServer:
    """Find or start a Redis server (env var, then 127.0.0.1:6379, then a throwaway)."""
    env_url = os.environ.get(REDIS_URL_ENV)
    if env_url:
        error = _redis_answers(env_url)
        if error is not None:
            raise ProvisioningError(f"{REDIS_URL_ENV}={_redact(env_url)} does not answer PING: {error!r}")
        return RedisServer(env_url, source="env")

    url = f"redis://{LOCAL_HOST}:{DEFAULT_REDIS_PORT}"
    error = _redis_answers(url)
    if error is None:
        return RedisServer(url, source="local")
    if find_redis_server() is None:
        raise ProvisioningError(
            f"no Redis available for the tests: {url} did not answer PING ({error!r}) and no "
            f"redis-server executable was found; {REDIS_INSTALL_HINT}"
        )
    return start_throwaway_redis()
