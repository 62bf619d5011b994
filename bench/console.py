"""The web console's first paint: from navigation to the blotter showing, with 1,000 orders in the account.

    .venv/bin/python bench/console.py [--orders 1000] [--runs 5]

Starts ``execsvc serve`` on a free port with a fresh SQLite file (tests/browser/live.py, the browser tests'
helper), places ``--orders`` orders over REST on one account (nine in ten market buys, which fill, one in ten limit buys
3% under the mark, which rest), then opens ``/console/`` ``--runs`` times in headless Debian Chromium, each
time in a fresh browser context (empty cache) with the token already in sessionStorage, as after a login.

The figure is the page's own clock (``performance.now()``, milliseconds since navigation start) at the first
animation frame in which the blotter holds its first page of orders (100 rows, the newest; older ones load on
demand): the HTML, the CSS, the JavaScript modules, ``GET /v1/account``, ``GET /v1/orders?limit=100`` and the
table's render. Printed: every run, the median and the worst, with the first contentful paint for reference.
The issue's goal is under 1 s. Chromium is EXECSVC_CHROMIUM or what ``scripts/ensure-chromium`` prints.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.browser.live import CHROMIUM_ARGS, Api, LiveService, find_chromium  # noqa: E402

ROWS = 100  # the blotter's first page
BLOTTER_SHOWN = "n => document.querySelectorAll('#blotter-rows tr').length >= n ? performance.now() : false"


def seed(api: Api, orders: int) -> None:
    """``orders`` orders on the account: small market buys (about 6.5 USDT each), and every tenth a resting limit."""
    price = api.resting_limit_price()
    for i in range(orders):
        if i % 10 == 9:
            api.order(symbol="BTC/USDT", side="buy", type="limit", qty="0.0001", limit_price=price)
        else:
            api.order(symbol="BTC/USDT", side="buy", type="market", qty="0.0001")


def measure(base: str, token: str, chromium: str, runs: int, rows: int) -> list[tuple[float, float]]:
    """(blotter shown, first contentful paint) in ms, per run."""
    results = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            for _ in range(runs):
                context = browser.new_context(viewport={"width": 1440, "height": 900})
                # As after a login: the token in this origin's sessionStorage before the page's scripts run.
                context.add_init_script(
                    f"if (location.origin === {json.dumps(base)}) "
                    f"sessionStorage.setItem('execsvc.console.token', {json.dumps(token)});"
                )
                page = context.new_page()
                page.goto(f"{base}/console/", wait_until="commit")
                shown_at = page.wait_for_function(BLOTTER_SHOWN, arg=rows, polling="raf", timeout=30_000)
                shown = float(shown_at.json_value())
                fcp = page.evaluate(
                    "(performance.getEntriesByName('first-contentful-paint')[0] || {startTime: NaN}).startTime"
                )
                results.append((shown, float(fcp)))
                context.close()
        finally:
            browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        sys.exit("no Chromium: set EXECSVC_CHROMIUM or install Debian's chromium (scripts/ensure-chromium)")
    with tempfile.TemporaryDirectory(prefix="execsvc-console-bench-") as tmp:
        service = LiveService(Path(tmp))
        service.start()
        try:
            token = service.token("bench-console", "orders:read,orders:write")
            api = Api(service.base, token)
            try:
                seed(api, args.orders)
            finally:
                api.close()
            print(f"{args.orders} orders placed on the account; Chromium {chromium}")
            rows = min(ROWS, args.orders)
            results = measure(service.base, token, chromium, args.runs, rows)
        finally:
            service.stop()
    for i, (shown, fcp) in enumerate(results, 1):
        print(f"run {i}: blotter shown at {shown:.0f} ms (first contentful paint {fcp:.0f} ms)")
    shown_all = [r[0] for r in results]
    print(
        f"console first paint (blotter with {min(ROWS, args.orders)} of {args.orders} orders): "
        f"median {statistics.median(shown_all):.0f} ms, worst {max(shown_all):.0f} ms over {len(results)} runs"
    )


if __name__ == "__main__":
    main()
