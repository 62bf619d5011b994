"""A bare reference endpoint on the same stack as execsvc, to compare the full order path against.

FastAPI + pydantic (the service's own ``OrderRequest`` model) + SQLAlchemy 2 Core async on asyncpg (through
``execsvc.db.engine.make_engine``, so the same pool settings, pre-ping included) + uvicorn (uvloop/httptools when
installed, access log off, one worker, start-up's heap frozen as ``execsvc serve`` freezes it). ``POST /orders``
validates the body, converts ``qty`` to ``Decimal`` and runs ONE insert transaction, answering 201 with a small JSON
body. No auth, no risk, no broker, no ledger: this is
the floor the full path is measured against.

    python bench/reference_app.py --database-url postgresql+asyncpg://... --port 8100
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import uvicorn
from fastapi import FastAPI, Request
from pydantic import ValidationError
from sqlalchemy import Column, DateTime, MetaData, Numeric, String, Table, Uuid, insert
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from execsvc.contract.models import OrderRequest
from execsvc.db.engine import make_engine

metadata = MetaData()
bench_orders = Table(
    "bench_orders",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("symbol", String(41), nullable=False),
    Column("side", String(4), nullable=False),
    Column("qty", Numeric(40, 18, asdecimal=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

JSON = "application/json"


def create_app(database_url: str, pool_size: int = 10) -> FastAPI:
    """The reference app; it creates its table on startup."""
    engine: AsyncEngine = make_engine(database_url, pool_size)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    @app.post("/orders")
    async def post_order(request: Request) -> Response:
        try:
            body = OrderRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return Response(json.dumps({"error": "invalid", "count": exc.error_count()}), 422, media_type=JSON)
        order_id = uuid.uuid4()
        async with engine.begin() as conn:
            await conn.execute(
                insert(bench_orders).values(
                    id=order_id,
                    symbol=body.symbol,
                    side=body.side,
                    qty=Decimal(body.qty),
                    created_at=datetime.now(UTC),
                )
            )
        return Response(f'{{"id":"{order_id}","status":"accepted"}}', 201, media_type=JSON)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("EXECSVC_DATABASE_URL"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--pool-size", type=int, default=int(os.environ.get("EXECSVC_DB_POOL_SIZE", "10")))
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url (or EXECSVC_DATABASE_URL) is required")
    url = args.database_url
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+asyncpg://" + url.split("://", 1)[1]
    app = create_app(url, args.pool_size)
    gc.collect()  # as `execsvc serve` does: what start-up built kept out of the collector's full passes
    gc.freeze()
    # Exactly how `execsvc serve` runs uvicorn: loop/http "auto" pick uvloop/httptools when installed.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
