"""Write the AsyncAPI document's message schemas as one JSON Schema document (for datamodel-code-generator).

    python scripts/asyncapi_to_jsonschema.py openapi/asyncapi.yaml OUT.json

AsyncAPI 3 schemas are JSON Schema; only their home differs (``#/components/schemas/X`` becomes ``#/$defs/X``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def relocate(node: Any) -> Any:
    """The schema with its references pointed at ``$defs``."""
    if isinstance(node, dict):
        return {
            key: value.replace("#/components/schemas/", "#/$defs/") if key == "$ref" else relocate(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [relocate(item) for item in node]
    return node


def main(source: str, target: str) -> None:
    document = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "StreamMessages",
        "$defs": relocate(document["components"]["schemas"]),
    }
    Path(target).write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
