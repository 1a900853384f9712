"""The shipped HAProxy config for a fleet of gateways (``runtimes/serve/haproxy.cfg``).

A stream's state lives in one gateway, so the balancer must send every request of one id
to the same gateway. These checks read the config as shipped (through the package, so a
file left out of the wheel fails here too) and hold it against the server's routes and
token gate. ``haproxy -c`` and a live two-gateway run were done by hand when it was written.
"""

from __future__ import annotations

import asyncio
import re
from importlib.resources import files
from typing import Any

import pytest

from edgelstm.runtimes.serve.access import BearerTokenGate, ServeAccess
from edgelstm.runtimes.serve.app import ROUTES
from edgelstm.runtimes.serve.stream_routes import PATHS as STREAM_PATHS

Sections = dict[str, list[list[str]]]


@pytest.fixture(scope="module")
def sections() -> Sections:
    """``"backend gateways"`` -> its directives, each split into words, comments dropped."""
    text = (files("edgelstm.runtimes.serve") / "haproxy.cfg").read_text(encoding="utf-8")
    found: Sections = {}
    current: list[list[str]] = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if raw[0].isspace():
            current.append(words)
        else:  # a section header starts in column 0
            current = found.setdefault(" ".join(words), [])
    return found


def directive(sections: Sections, section: str, *name: str) -> list[str]:
    """The words after ``name`` in ``section``, falling back to ``defaults`` like HAProxy."""
    for where in (section, "defaults"):
        for words in sections.get(where, []):
            if tuple(words[: len(name)]) == name:
                return words[len(name) :]
    raise AssertionError(f"{' '.join(name)!r} is missing from [{section}] and [defaults]")


def uri_key(uri: str, depth: int, *, path_only: bool) -> str:
    """What HAProxy's ``balance uri depth N`` hashes (backend.c, get_server_uh): the URI up
    to its (N+1)-th "/" or its "?", whichever comes first; ``path-only`` first drops a
    "scheme://authority" (HTTP/2 and absolute-form requests carry one)."""
    if path_only:
        uri = re.sub(r"^[a-z][a-z0-9+.-]*://[^/]*", "", uri)
    return "/".join(uri.split("?", 1)[0].split("/")[: depth + 1])


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(us|ms|s|m|h|d)?", value)
    assert match, f"not an HAProxy duration: {value!r}"
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return int(match[1]) * scale[match[2] or "ms"]  # a bare number is milliseconds


def test_backend_hashes_the_uri_prefix_on_a_consistent_ring(sections: Sections) -> None:
    balance = directive(sections, "backend gateways", "balance")
    assert balance[0] == "uri" and balance[balance.index("depth") + 1] == "3"
    assert "whole" not in balance  # the query (?reset=true) must not change the key
    assert "len" not in balance  # a length cap would cut long ids and merge streams
    # a ring, so a gateway coming or going moves only its own streams
    assert directive(sections, "backend gateways", "hash-type") == ["consistent"]
    # the ring is placed by server id: explicit and unique, so removing one renumbers none
    servers = [w for w in sections["backend gateways"] if w[0] == "server"]
    ids = [w[w.index("id") + 1] for w in servers]
    assert len(servers) >= 2 and len(set(ids)) == len(servers)


def test_every_route_of_one_stream_hashes_alike(sections: Sections) -> None:
    depth = int(directive(sections, "backend gateways", "balance", "uri", "depth")[0])
    path_only = "path-only" in directive(sections, "backend gateways", "balance")

    def key(uri: str) -> str:
        return uri_key(uri, depth, path_only=path_only)

    one = {
        key("/v1/streams/s1/frames"),
        key("/v1/streams/s1/ws"),
        key("/v1/streams/s1?reset=true"),
        key("https://gw.example:8443/v1/streams/s1/frames"),  # HTTP/2 carries the authority
    }
    # the server's own routes with one id, so a new route under another prefix fails here
    paths = [*(r.path for r in ROUTES), *STREAM_PATHS]
    one |= {key(p.replace("{stream_id}", "s1")) for p in paths if "{stream_id}" in p}
    assert one == {"/v1/streams/s1"}
    assert key("/v1/streams/s2/frames") != key("/v1/streams/s1/frames")


def test_health_check_reaches_healthz_without_a_token(sections: Sections) -> None:
    assert directive(sections, "backend gateways", "option", "httpchk") == ["GET", "/healthz"]
    assert directive(sections, "backend gateways", "http-check", "expect") == ["status", "200"]
    servers = [w for w in sections["backend gateways"] if w[0] == "server"]
    assert servers and all("check" in w for w in servers)  # unchecked servers never drop out

    # HAProxy's check sends no Authorization header: a gateway with tokens must let it in
    reached: list[str] = []
    refused: list[int] = []

    async def routes(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            refused.append(message["status"])

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    gate = BearerTokenGate(routes, ServeAccess.from_tokens(["t" * 32]))
    for path in ("/healthz", "/v1/model"):  # /v1/model shows the gate is on
        asyncio.run(gate({"type": "http", "path": path, "headers": []}, receive, send))
    assert reached == ["/healthz"] and refused == [401]


def test_websockets_get_a_tunnel_timeout(sections: Sections) -> None:
    tunnel = seconds(directive(sections, "backend gateways", "timeout", "tunnel")[0])
    server = seconds(directive(sections, "backend gateways", "timeout", "server")[0])
    # a WebSocket idles between frames far longer than one request may take
    assert tunnel > server
