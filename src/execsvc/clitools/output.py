"""What the commands print: aligned tables with headers for people, JSON for machines."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

Row = Mapping[str, Any]


def cell(value: Any) -> str:
    """One value as a table shows it: ``-`` for nothing, lists joined by commas."""
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def table(columns: Sequence[tuple[str, str]], rows: Sequence[Row], out: TextIO | None = None) -> None:
    """Print ``rows`` under a header; ``columns`` are (key, HEADER) pairs. An empty result says so."""
    stream = out or sys.stdout
    if not rows:
        print("(none)", file=stream)
        return
    grid = [[header for _, header in columns]] + [[cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    for line in grid:
        print("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip(), file=stream)


def fields(pairs: Sequence[tuple[str, Any]], out: TextIO | None = None) -> None:
    """Print one object as ``name: value`` lines, the names aligned."""
    stream = out or sys.stdout
    width = max((len(name) for name, _ in pairs), default=0)
    for name, value in pairs:
        print(f"{name.ljust(width)}  {cell(value)}", file=stream)


def as_json(document: Any, out: TextIO | None = None) -> None:
    """Print the service's document as it came, indented."""
    print(json.dumps(document, indent=2, sort_keys=True), file=out or sys.stdout)
