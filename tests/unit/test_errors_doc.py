"""docs/errors.md lists every error code the service can answer, once, and nothing it cannot answer."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "execsvc"
DOC = ROOT / "docs" / "errors.md"

# Where a code is written in the source: an error class's (or an ``InvalidOrder``'s) ``code``; the status and code
# of a problem answer made in the API; an account rule's code; the codes of the routing errors.
_CODE_SITES = (
    re.compile(r'\bcode\s*=\s*"([a-z]+(?:_[a-z]+)*)"'),
    re.compile(r'\b(?:ApiProblem|problem_response|problem_body)\(\s*\d{3},\s*"([a-z]+(?:_[a-z]+)*)"'),
    re.compile(r'\bAccountRuleBroken\(\s*"([a-z]+(?:_[a-z]+)*)"'),
    re.compile(r'\{\s*404:\s*"([a-z_]+)",\s*405:\s*"([a-z_]+)"\s*\}'),
)
# Codes of errors that never reach a client as such: the pipeline, the adapters or the API turn them into something
# else first (an order's state or reject code, another answer).
_INTERNAL = {
    "error": "the base class's placeholder; every error raised has its own code",
    "broker_error": "the base of the broker errors below",
    "broker_rejected": "the venue refused an order: the order is stored rejected with this reject_code",
    "broker_auth_failed": "the venue refused credentials: answered as credentials_refused",
    "broker_outcome_unknown": "the order is left `unknown` for reconciliation, never an error answer",
    "broker_capability_missing": "an adapter without an operation: the pipeline falls back or rejects the order",
    "dependency_unavailable": "answered as service_unavailable",
    "invalid_fill": "a broker report that cannot belong to its order: logged by the pipeline",
    "not_found_at_venue": "the ccxt adapter's own: reconciliation reads it",
    "venue_data_error": "the ccxt adapter's own: a venue answer it cannot read, an unavailable broker to the caller",
}


def codes_in_source() -> set[str]:
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        if "contract" in path.relative_to(SRC).parts:
            continue
        text = path.read_text(encoding="utf-8")
        for site in _CODE_SITES:
            for match in site.finditer(text):
                found.update(g for g in match.groups() if g)
    return found - set(_INTERNAL)


def documented_rows() -> list[tuple[str, list[str]]]:
    """(status, codes) of each row of the table in docs/errors.md."""
    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].isdigit():
            rows.append((cells[0], re.findall(r"`([a-z_]+)`", cells[1])))
    return rows


def test_every_code_the_source_raises_is_in_the_errors_doc() -> None:
    documented = {code for _, codes in documented_rows() for code in codes}
    assert codes_in_source() - documented == set()


def test_the_errors_doc_lists_no_code_the_service_cannot_answer() -> None:
    documented = {code for _, codes in documented_rows() for code in codes}
    assert documented - codes_in_source() == set()


def test_the_errors_doc_gives_each_code_one_row_of_its_own() -> None:
    rows = documented_rows()
    assert all(len(codes) == 1 for _, codes in rows), [codes for _, codes in rows if len(codes) != 1]
    codes = [codes[0] for _, codes in rows]
    assert len(codes) == len(set(codes))


def test_the_scan_finds_codes_of_every_kind() -> None:
    # Guards the scan itself: one code from each kind of site.
    assert {"invalid_qty", "webhook_not_found", "venue_immutable", "method_not_allowed", "overloaded"} <= (
        codes_in_source()
    )
    assert set(_INTERNAL) & codes_in_source() == set()
