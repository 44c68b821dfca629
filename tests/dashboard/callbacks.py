"""Calling the dashboard's Dash callbacks over HTTP, the way the browser does, with any values.

``CallbackClient.call(key, values)`` posts to ``/_dash-update-component`` the request of the
callback ``key`` (a key of ``app.callback_map``) whose inputs and states take ``values``
(``{(id, property): value}``, None for the rest). The body is sent as raw JSON text, so
``Infinity`` and ``NaN`` literals (which a browser's JSON.stringify never writes, but a forged
request can) reach the server as they would over the wire.
"""

from __future__ import annotations

import json


def outputs_of(key: str) -> list[dict]:
    parts = key[2:-2].split("...") if key.startswith("..") else [key]
    return [{"id": p.rsplit(".", 1)[0], "property": p.rsplit(".", 1)[1]} for p in parts]


class CallbackClient:
    def __init__(self, app) -> None:
        self.app = app
        self.client = app.server.test_client()
        self.client.get("/")  # Dash sets up its routes on the first request

    def keys(self) -> list[str]:
        """The server's callbacks (a clientside one runs in the browser and has no function here)."""
        return [k for k, cb in self.app.callback_map.items() if "callback" in cb]

    def key_for(self, output: str) -> str:
        """The callback key whose outputs include ``output`` ('id.property')."""
        return next(k for k in self.app.callback_map if output in k)

    def body(self, key: str, values: dict, changed: list[str] | None = None) -> dict:
        cb = self.app.callback_map[key]
        outs = outputs_of(key)

        def items(specs):
            return [{"id": s["id"], "property": s["property"],
                     "value": values.get((s["id"], s["property"]))} for s in specs]
        inputs = items(cb["inputs"])
        return {"output": key, "outputs": outs if key.startswith("..") else outs[0], "inputs": inputs,
                "state": items(cb.get("state", [])),
                "changedPropIds": changed or [f"{i['id']}.{i['property']}" for i in inputs[:1]]}

    def call(self, key: str, values: dict, changed: list[str] | None = None):
        text = json.dumps(self.body(key, values, changed), allow_nan=True)
        return self.client.post("/_dash-update-component", data=text, content_type="application/json")
