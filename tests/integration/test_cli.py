"""The execsvc command as a user runs it: tokens on PostgreSQL, and the embedded first run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.services import free_port, wait_ready

EXECSVC = [sys.executable, "-m", "execsvc.cli"]


def run(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXECSVC, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def env_for(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECSVC_")}
    env["EXECSVC_DATABASE_URL"] = url
    return env


def test_tokens_create_list_revoke(pg_only_url: str) -> None:
    env = env_for(pg_only_url)
    assert run(["db", "upgrade"], env).returncode == 0
    created = run(["tokens", "create", "--account", "desk-1", "--scopes", "orders:read,orders:write"], env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("exs_")
    token_id = token.split("_")[1]
    listed = run(["tokens", "list"], env)
    assert token_id in listed.stdout
    assert "active" in listed.stdout
    assert token.split("_", 2)[2] not in listed.stdout  # never the secret
    assert run(["tokens", "revoke", token_id], env).returncode == 0
    assert "revoked" in run(["tokens", "list", "--account", "desk-1"], env).stdout
    assert run(["tokens", "revoke", token_id], env).returncode == 1


def test_tokens_create_refuses_unknown_scopes(pg_only_url: str) -> None:
    result = run(["tokens", "create", "--account", "a", "--scopes", "orders:everything"], env_for(pg_only_url))
    assert result.returncode == 2
    assert "unknown scopes" in result.stderr


def test_serve_requires_a_current_schema_on_postgres(pg_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = env_for(pg_server.admin_dsn.rsplit("/", 1)[0] + "/postgres")
    result = run(["serve", "--port", str(free_port())], env)
    assert result.returncode != 0
    assert "execsvc db upgrade" in result.stderr


@pytest.mark.live
def test_first_embedded_serve_creates_schema_and_prints_one_admin_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECSVC_")}
    env.update({"EXECSVC_SQLITE_PATH": str(tmp_path / "svc.db"), "EXECSVC_FEED_INTERVAL_SECONDS": "0.1"})
    port = free_port()
    proc = subprocess.Popen(
        [*EXECSVC, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        if not wait_ready(base):
            proc.kill()
            pytest.fail(f"server did not become ready: {proc.communicate()[1]}")
        body = {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "qty": "0.001", "limit_price": "1"}
        # the token is only on stderr; read it after stopping the server
        proc.terminate()
        _, err = proc.communicate(timeout=20)
        tokens = [line for line in err.splitlines() if line.startswith("exs_")]
        assert len(tokens) == 1
        assert (tmp_path / "svc.db").exists()
        # a second start prints no new token, and the first one works
        proc = subprocess.Popen(
            [*EXECSVC, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert wait_ready(base)
        r = httpx.post(f"{base}/v1/orders", json=body, headers={"Authorization": f"Bearer {tokens[0]}"})
        assert r.status_code == 422  # 0.001 BTC at 1 USDT is below the minimum notional
        assert r.json()["code"] == "invalid_order"
        assert r.json()["violations"][0]["rule"] == "min_notional"
        proc.terminate()
        _, err = proc.communicate(timeout=20)
        assert not [line for line in err.splitlines() if line.startswith("exs_")]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
