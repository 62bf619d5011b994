"""A small client of a running instance's public REST API, for the operator commands.

Every failure comes out as a ``CliError``: the service's problem+json as its ``code`` and ``detail`` on one line, a
refused token as exit 4, an unreachable service as exit 3. The token goes only into the Authorization header.
"""

from __future__ import annotations

from typing import Any

import httpx

from execsvc import __version__
from execsvc.clitools.exits import CliError, ExitCode

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT_SECONDS = 10.0


def _problem_line(response: httpx.Response) -> tuple[str, str]:
    """The problem's ``code`` and ``detail`` (or what can be said of an answer that is no problem document)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "code" in body:
        detail = body.get("detail") or body.get("title") or ""
        return str(body["code"]), " ".join(str(detail).split())
    return f"http_{response.status_code}", f"unexpected answer from {response.request.url} (is this an execsvc URL?)"


class ServiceClient:
    """Requests to one instance with one bearer token."""

    def __init__(self, url: str, token: str | None, transport: httpx.BaseTransport | None = None) -> None:
        if not token:
            raise CliError(
                ExitCode.USAGE,
                "no token: pass --token or set EXECSVC_TOKEN (make one with `execsvc tokens create`)",
            )
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": f"execsvc-cli/{__version__}"},
            timeout=TIMEOUT_SECONDS,
            transport=transport,
        )

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        """The JSON of a successful answer."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(method, path, params=query, json=body)
        except httpx.InvalidURL as exc:
            raise CliError(ExitCode.USAGE, f"--url {self.url!r} is not a URL: {exc}") from exc
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise CliError(
                ExitCode.UNREACHABLE,
                f"cannot reach execsvc at {self.url} ({reason}): is `execsvc serve` running there? "
                "(set --url or EXECSVC_URL)",
            ) from exc
        if response.is_success:
            try:
                return response.json()
            except ValueError as exc:
                raise CliError(
                    ExitCode.FAILED, f"unexpected answer from {response.request.url} (is this an execsvc URL?)"
                ) from exc
        code, detail = _problem_line(response)
        if response.status_code in (401, 403):
            fix = (
                "check --token / EXECSVC_TOKEN"
                if response.status_code == 401
                else "use a token with that scope (`execsvc tokens create --scopes ...`)"
            )
            raise CliError(ExitCode.UNAUTHORIZED, f"{code}: {detail}; {fix}")
        raise CliError(ExitCode.FAILED, f"{code}: {detail}")
