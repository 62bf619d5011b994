"""An OTLP/HTTP trace receiver on loopback that takes every export and keeps nothing (``bench/run.py --traces``).

The service exports as it would to a collector (protobuf over HTTP, from the SDK's batch thread), so what tracing
costs it is measured whole; the sink only counts the requests and bytes it was sent.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    server: Sink

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(size)
        with self.server.lock:
            self.server.requests += 1
            self.server.bytes += size
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")  # an empty ExportTraceServiceResponse: everything accepted
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


class Sink(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests = 0
        self.bytes = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"

    def __enter__(self) -> Sink:
        threading.Thread(target=self.serve_forever, name="otlp-sink", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
