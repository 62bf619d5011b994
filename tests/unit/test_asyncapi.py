"""The WebSocket contract (openapi/asyncapi.yaml): a well-formed AsyncAPI 3 document whose every message has a
generated model (scripts/check-contract fails when the models drift from it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from starlette.routing import WebSocketRoute

from execsvc.api.routes import stream as routes
from execsvc.contract import stream

DOCUMENT = Path(__file__).resolve().parents[2] / "openapi" / "asyncapi.yaml"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


def resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_it_is_an_asyncapi_3_document_whose_references_all_resolve(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"].startswith("3.")

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(doc, node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)


def test_every_message_in_both_directions_has_a_generated_model(doc: dict[str, Any]) -> None:
    directions = {"receive": set(), "send": set()}
    for operation in doc["operations"].values():
        for ref in operation["messages"] + operation.get("reply", {}).get("messages", []):
            message = resolve(doc, resolve(doc, ref["$ref"])["$ref"])
            name = message["payload"]["$ref"].rsplit("/", 1)[1]
            kind = "receive" if ref in operation["messages"] and operation["action"] == "receive" else "send"
            directions[kind].add(name)
    assert directions["receive"] == {"AuthRequest", "SubscribeRequest", "UnsubscribeRequest"}
    assert {"UpdateMessage", "SnapshotMessage", "HeartbeatMessage", "ErrorMessage"} <= directions["send"]
    for name in directions["receive"] | directions["send"]:
        assert hasattr(stream, name), name


def test_the_generated_models_hold_the_protocol() -> None:
    request = stream.SubscribeRequest.model_validate({"action": "subscribe", "channel": "orders", "since_seq": 5})
    assert (request.channel, request.since_seq) == ("orders", 5)
    for bad in (
        {"action": "subscribe", "channel": "everything"},
        {"action": "subscribe", "channel": "orders", "since_seq": -1},
        {"action": "subscribe", "channel": "orders", "extra": 1},
        {"action": "auth", "token": ""},
    ):
        with pytest.raises(ValidationError):
            (stream.AuthRequest if bad["action"] == "auth" else stream.SubscribeRequest).model_validate(bad)
    update = stream.UpdateMessage(channel="fills", seq=1, data={"id": "f-1"})
    assert update.model_dump(exclude_none=True) == {"channel": "fills", "seq": 1, "data": {"id": "f-1"}}


def test_every_websocket_path_served_is_a_channel_of_the_document(doc: dict[str, Any]) -> None:
    served = {route.path for route in routes.router.routes if isinstance(route, WebSocketRoute)}
    assert served == {channel["address"] for channel in doc["channels"].values()}
