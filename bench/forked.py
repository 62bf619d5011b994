"""Serve execsvc, or the bench's reference app, from N processes sharing one listening socket.

    python bench/forked.py execsvc --port 8000 --workers 2
    python bench/forked.py reference --port 8100 --workers 2 --database-url postgresql+asyncpg://... --pool-size 32

What ``execsvc serve --workers N`` would be, for measuring it (``run.py --workers N``): the parent binds the port
and forks N children; each builds its own application (its own pools, venues and background loops, as separate
instances of the service would) and accepts connections on the shared socket. SIGTERM/SIGINT reach every child.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _execsvc() -> tuple[Callable[[], Any], dict[str, Any]]:
    from execsvc.bootstrap import build
    from execsvc.config import Settings
    from execsvc.streams.server_protocol import FrameProtocol

    settings = Settings()
    return lambda: build(settings).app(), {"ws": FrameProtocol}


def _reference(database_url: str, pool_size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    import reference_app

    url = database_url
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+asyncpg://" + url.split("://", 1)[1]
    return lambda: reference_app.create_app(url, pool_size), {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("app", choices=("execsvc", "reference"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", default=os.environ.get("EXECSVC_DATABASE_URL", ""))
    parser.add_argument("--pool-size", type=int, default=10)
    args = parser.parse_args()
    make, extra = _execsvc() if args.app == "execsvc" else _reference(args.database_url, args.pool_size)
    sock = socket.create_server(("127.0.0.1", args.port), backlog=2048)
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:  # a child: its own application and event loop on the shared socket
            app = make()
            gc.collect()  # as `execsvc serve` does: start-up's objects out of the collector's way
            gc.freeze()
            config = uvicorn.Config(app, log_config=None, access_log=False, server_header=False, **extra)
            uvicorn.Server(config).run(sockets=[sock])
            os._exit(0)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for pid in children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
