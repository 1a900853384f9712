"""Who may talk to ``edgelstm serve``: bearer tokens, the open-port refusal, TLS and the
bounds on hostile clients (:mod:`edgelstm.runtimes.serve.access`).

The route checks run the ASGI app in process; the handshake, TLS and connection-limit checks
run ``edgelstm serve`` as a real process (uvicorn), because those live in the server.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
from conftest import (
    CliRunner,
    assert_clean_failure,
    free_port,
    server_process,
    serving,
    single_thread,
)

from edgelstm.errors import InvalidInputError
from edgelstm.runtimes.serve import ServeLimits, create_app
from edgelstm.runtimes.serve.access import (
    TOKEN_ENV,
    ServeAccess,
    check_exposure,
    read_tokens,
)

if TYPE_CHECKING:
    pass

TOKEN = "tok-" + "a" * 28
OTHER = "tok-" + "b" * 28
#: A bound for hangs (the server starting, a reply), never a timing check.
HANG_S = 120.0


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    single_thread()


def _features(stream_model: Path) -> int:
    from edgelstm.runtimes.ort.artifact import load_artifact

    return len(load_artifact(stream_model, verify=False).edgelstm_metadata().feature_names)


def _frames(stream_model: Path, steps: int = 3) -> list[list[float]]:
    values: list[list[float]] = (
        np.random.default_rng(0).normal(size=(steps, _features(stream_model))).tolist()
    )
    return values


# ============================================================================================
# 1. tokens, exposure


def test_only_a_known_bearer_token_is_allowed() -> None:
    access = ServeAccess.from_tokens([TOKEN, OTHER])
    assert access.allows(f"Bearer {TOKEN}") and access.allows(f"bearer {OTHER}")
    for header in (None, "", TOKEN, f"Basic {TOKEN}", "Bearer ", f"Bearer {TOKEN}x", "Bearer a"):
        assert not access.allows(header), header
    assert ServeAccess().allows(None), "no tokens: no authentication"


def test_tokens_come_from_the_file_one_per_line_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{TOKEN}\n\n  {OTHER}  \n", encoding="utf-8")
    third = "env-" + "c" * 20
    assert read_tokens(path, {TOKEN_ENV: third}) == [TOKEN, OTHER, third]
    assert read_tokens(None, {}) == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param(f"{TOKEN}\nshort\n", ("line 2", "at least 16"), id="short"),
        pytest.param("\n\n", ("holds no token",), id="empty"),
        pytest.param(f"{TOKEN} {OTHER}\n", ("line 1", "without spaces"), id="spaces"),
    ],
)
def test_a_bad_token_file_is_refused_naming_the_line(
    tmp_path: Path, text: str, words: tuple[str, ...]
) -> None:
    path = tmp_path / "tokens"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInputError) as info:
        read_tokens(path, {})
    for word in (str(path), *words):
        assert word in str(info.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_token(host: str) -> None:
    assert check_exposure(host, ServeAccess(), insecure_no_auth=False) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "gateway.local"])
def test_an_open_port_without_tokens_is_refused_unless_accepted(host: str) -> None:
    with pytest.raises(InvalidInputError, match="--token-file") as info:
        check_exposure(host, ServeAccess(), insecure_no_auth=False)
    assert "--insecure-no-auth" in str(info.value) and TOKEN_ENV in str(info.value)
    warning = check_exposure(host, ServeAccess(), insecure_no_auth=True)
    assert warning is not None and "anyone who can reach this port" in warning
    assert check_exposure(host, ServeAccess.from_tokens([TOKEN]), insecure_no_auth=False) is None


# ============================================================================================
# 2. the routes behind the gate (in process)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert set(response.json()) == {"error"}
    assert "Authorization: Bearer" in response.json()["error"]
    assert "\n" not in response.text


def test_without_a_token_every_route_but_healthz_is_401_and_no_stream_starts(
    stream_model: Path,
) -> None:
    app = create_app(stream_model, access=ServeAccess.from_tokens([TOKEN, OTHER]))
    body = {"frames": _frames(stream_model)}
    good = {"Authorization": f"Bearer {OTHER}"}

    async def main() -> None:
        async with serving(app) as client:
            assert (await client.get("/healthz")).status_code == 200
            for bad in ({}, {"Authorization": "Bearer wrong-token-but-long-enough"}):
                _assert_unauthorized(
                    await client.post("/v1/streams/s/frames", json=body, headers=bad)
                )
                _assert_unauthorized(await client.get("/v1/model", headers=bad))
                _assert_unauthorized(await client.delete("/v1/streams/s", headers=bad))
                _assert_unauthorized(await client.get("/metrics", headers=bad))
            metrics = (await client.get("/metrics", headers=good)).text
            assert _metric(metrics, "edgelstm_active_streams") == 0
            assert 'edgelstm_rejections_total{reason="unauthorized"} 8' in metrics
            served = await client.post("/v1/streams/s/frames", json=body, headers=good)
            assert served.status_code == 200, served.text
            assert [row["frame"] for row in served.json()["rows"]] == [2]  # classify: the last
            assert (await client.get("/v1/model", headers=good)).json()["task"] == "classify"

    asyncio.run(asyncio.wait_for(main(), HANG_S))


def test_each_tokens_streams_are_its_own(stream_model: Path) -> None:
    app = create_app(stream_model, access=ServeAccess.from_tokens([TOKEN, OTHER]))
    first, second = _frames(stream_model, 4)[:2], _frames(stream_model, 4)[2:]
    a = {"Authorization": f"Bearer {TOKEN}"}
    b = {"Authorization": f"Bearer {OTHER}"}

    async def main() -> None:
        async with serving(app) as client:
            url = "/v1/streams/s/frames"
            assert (await client.post(url, json={"frames": first}, headers=a)).status_code == 200
            # The same id under another token is another stream: B cannot end A's ...
            assert (await client.delete("/v1/streams/s", headers=b)).status_code == 404
            # ... and B's "s" starts from zero state, untouched by A's frames.
            rows_b = (await client.post(url, json={"frames": second}, headers=b)).json()["rows"]
            fresh = await client.post("/v1/streams/t/frames", json={"frames": second}, headers=a)
            assert rows_b == fresh.json()["rows"]
            continued = await client.post(url, json={"frames": second}, headers=a)
            assert continued.json()["rows"] != rows_b  # A's "s" carried its state on
            metrics = (await client.get("/metrics", headers=a)).text
            assert _metric(metrics, "edgelstm_active_streams") == 3

    asyncio.run(asyncio.wait_for(main(), HANG_S))


def test_max_streams_per_token_leaves_other_tokens_served(stream_model: Path) -> None:
    limits = ServeLimits(max_streams_per_token=2)
    app = create_app(stream_model, limits=limits, access=ServeAccess.from_tokens([TOKEN, OTHER]))
    body = {"frames": _frames(stream_model)}
    a = {"Authorization": f"Bearer {TOKEN}"}
    b = {"Authorization": f"Bearer {OTHER}"}

    async def main() -> None:
        async with serving(app) as client:

            async def post(stream: str, headers: dict[str, str]) -> httpx.Response:
                return await client.post(f"/v1/streams/{stream}/frames", json=body, headers=headers)

            assert [(await post(s, a)).status_code for s in ("s1", "s2", "s1")] == [200] * 3
            refused = await post("s3", a)
            assert refused.status_code == 429, refused.text
            assert "--token-streams" in refused.json()["error"]
            assert (await post("s1", b)).status_code == 200  # another token: its own count
            assert (await client.delete("/v1/streams/s1", headers=a)).status_code == 200
            assert (await post("s3", a)).status_code == 200

    asyncio.run(asyncio.wait_for(main(), HANG_S))


def test_metrics_public_opens_metrics_only(stream_model: Path) -> None:
    app = create_app(stream_model, access=ServeAccess.from_tokens([TOKEN], metrics_public=True))

    async def main() -> None:
        async with serving(app) as client:
            assert (await client.get("/metrics")).status_code == 200
            _assert_unauthorized(await client.get("/v1/model"))

    asyncio.run(asyncio.wait_for(main(), HANG_S))


def test_a_trickling_body_is_408_and_other_clients_are_served(stream_model: Path) -> None:
    limits = ServeLimits(body_timeout_s=0.3)
    app = create_app(stream_model, limits=limits)
    body = json.dumps({"frames": _frames(stream_model)}).encode()

    async def trickle() -> AsyncIterator[bytes]:
        yield body[:5]
        await asyncio.sleep(HANG_S)  # never sends the rest
        yield body[5:]

    async def main() -> None:
        async with serving(app) as client:
            slow = asyncio.create_task(client.post("/v1/streams/slow/frames", content=trickle()))
            fast = await client.post("/v1/streams/fast/frames", content=body)
            assert fast.status_code == 200, fast.text
            refused = await asyncio.wait_for(slow, HANG_S)
            assert refused.status_code == 408, refused.text
            assert "--body-timeout" in refused.json()["error"]
            metrics = (await client.get("/metrics")).text
            assert _metric(metrics, "edgelstm_active_streams") == 1  # "slow" never started

    asyncio.run(asyncio.wait_for(main(), HANG_S))


# ============================================================================================
# 3. a real server: TLS, the WebSocket handshake, connection and message bounds


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """The README's openssl line: a certificate for localhost/127.0.0.1 and its key."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    command += ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
    command += ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    subprocess.run(command, check=True, capture_output=True, timeout=HANG_S)
    return cert, key


def _ws_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def test_tls_and_tokens_on_a_real_server(stream_model: Path, tmp_path: Path) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    cert, key = _self_signed(tmp_path)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN}\n", encoding="utf-8")
    port = free_port()
    args = [str(stream_model), "--port", str(port), "--token-file", str(tokens)]
    args += ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    context = ssl.create_default_context(cafile=str(cert))
    frames = np.asarray(_frames(stream_model), dtype="<f4")
    auth = {"Authorization": f"Bearer {TOKEN}"}

    async def main() -> None:
        base = f"https://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, verify=context, timeout=HANG_S) as client:
            assert (await client.get("/healthz")).status_code == 200
            _assert_unauthorized(
                await client.post("/v1/streams/h/frames", json={"frames": frames.tolist()})
            )
            ok = await client.post(
                "/v1/streams/h/frames", json={"frames": frames.tolist()}, headers=auth
            )
            assert ok.status_code == 200, ok.text
        with pytest.raises(httpx.TransportError):  # plain HTTP to the TLS port
            async with httpx.AsyncClient(timeout=HANG_S) as plain:
                await plain.get(f"http://127.0.0.1:{port}/healthz")
        url = f"wss://127.0.0.1:{port}/v1/streams/w/ws"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, ssl=context):
                pass
        assert _ws_status(refused.value) == 401
        async with connect(url, ssl=context, additional_headers=auth) as ws:
            await ws.send(frames.tobytes())
            reply = json.loads(await ws.recv())
        assert reply["rows"] == ok.json()["rows"]  # same frames, fresh stream: same rows

    with server_process(args, tmp_path / "serve.log") as (announced, _):
        assert f"on https://127.0.0.1:{port}" in announced
        assert "1 token accepted" in announced
        asyncio.run(asyncio.wait_for(main(), HANG_S))


def test_connection_and_message_bounds_leave_other_clients_served(
    stream_model: Path, tmp_path: Path
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    port = free_port()
    # One worker: the bound is uvicorn's per process (workers split it), so which connection
    # is refused is exact only in one process.
    args = [str(stream_model), "--port", str(port), "--max-connections", "3", "--workers", "1"]
    frames = np.asarray(_frames(stream_model), dtype="<f4")
    too_big = np.zeros((ServeLimits().max_body_bytes // 4 + 64,), dtype="<f4").tobytes()

    async def main() -> None:
        url = f"ws://127.0.0.1:{port}/v1/streams"
        async with connect(f"{url}/a/ws") as first, connect(f"{url}/b/ws") as second:
            await first.send(frames.tobytes())
            assert "rows" in json.loads(await first.recv())
            # The third connection (of 3) is this request: uvicorn refuses the next with 503.
            async with connect(f"{url}/c/ws") as third:
                async with httpx.AsyncClient(timeout=HANG_S) as client:
                    busy = await client.get(f"http://127.0.0.1:{port}/v1/model")
                assert busy.status_code == 503, busy.text
                # An oversized message closes that socket only (1009: message too big).
                await third.send(too_big)
                with pytest.raises(ConnectionClosed) as closed:
                    await third.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
            await second.send(frames.tobytes())
            assert "rows" in json.loads(await second.recv())
        async with httpx.AsyncClient(timeout=HANG_S) as client:
            assert (await client.get(f"http://127.0.0.1:{port}/v1/model")).status_code == 200

    with server_process(args, tmp_path / "serve.log") as (announced, _):
        assert "no authentication" in announced
        asyncio.run(asyncio.wait_for(main(), HANG_S))


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (EOF, after any bytes still in flight) before the
    bound ran out."""
    sock.settimeout(HANG_S)
    try:
        while sock.recv(1024):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_a_slow_request_head_is_cut_off_and_other_clients_are_served(
    stream_model: Path, tmp_path: Path
) -> None:
    """Slowloris: connections that never finish their headers (an HTTP request, a WebSocket
    upgrade, the second request on a kept-alive connection) are closed after
    --header-timeout; they would otherwise hold --max-connections forever."""
    port = free_port()
    args = [str(stream_model), "--port", str(port), "--header-timeout", "0.5", "--workers", "1"]
    heads = [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
        b"GET /v1/streams/a/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n",
    ]
    with server_process(args, tmp_path / "serve.log"):
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in heads]
        kept = socket.create_connection(("127.0.0.1", port))
        try:
            for sock, head in zip(slow, heads, strict=True):
                sock.sendall(head)
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            kept.settimeout(HANG_S)
            first = b""
            while not first.endswith(b'{"status":"ok"}'):  # the whole first response
                first += kept.recv(1024)
            assert first.startswith(b"HTTP/1.1 200"), first
            kept.sendall(b"GET /healthz HTTP/1.1\r\n")  # the next head, never finished
            # A well-behaved client meanwhile is served.
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=HANG_S).status_code == 200
            assert [_closed_by_server(sock) for sock in [*slow, kept]] == [True, True, True]
        finally:
            for sock in [*slow, kept]:
                sock.close()


def test_insecure_no_auth_serves_with_a_warning(stream_model: Path, tmp_path: Path) -> None:
    port = free_port()
    args = [str(stream_model), "--host", "0.0.0.0", "--port", str(port), "--insecure-no-auth"]
    with server_process(args, tmp_path / "serve.log") as (announced, _):
        assert announced.startswith("warning: --host 0.0.0.0 with --insecure-no-auth")
        response = httpx.get(f"http://127.0.0.1:{port}/v1/model", timeout=HANG_S)
        assert response.status_code == 200


def test_the_environment_token_is_enough_for_an_open_port(
    stream_model: Path, tmp_path: Path
) -> None:
    port = free_port()
    args = [str(stream_model), "--host", "0.0.0.0", "--port", str(port)]
    with server_process(args, tmp_path / "serve.log", env={TOKEN_ENV: TOKEN}) as (announced, _):
        assert "warning" not in announced and "1 token accepted" in announced
        url = f"http://127.0.0.1:{port}/v1/model"
        assert httpx.get(url, timeout=HANG_S).status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(url, headers=auth, timeout=HANG_S).status_code == 200


# ============================================================================================
# 4. the command line refuses before listening


@pytest.fixture
def no_listening(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail (rather than hang) if a test's ``edgelstm serve`` got as far as listening."""
    import edgelstm.runtimes.serve as serve_module

    def refuse(*args: Any) -> Any:
        raise AssertionError("edgelstm serve started its server")

    monkeypatch.setattr(serve_module, "_server_class", refuse)


@pytest.mark.usefixtures("no_listening")
def test_cli_refusals_are_one_line_each(
    cli: CliRunner, stream_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    port = ["--port", str(free_port())]
    result = cli("serve", stream_model, "--host", "0.0.0.0", *port)
    assert_clean_failure(result, None, "--host 0.0.0.0", "--token-file", "--insecure-no-auth")

    short = tmp_path / "short"
    short.write_text("abc\n", encoding="utf-8")
    result = cli("serve", stream_model, "--token-file", short, *port)
    assert_clean_failure(result, None, str(short), "line 1", "at least 16")

    cert, _key = _self_signed(tmp_path)
    result = cli("serve", stream_model, "--token-streams", "4", *port)
    assert_clean_failure(result, None, "--token-streams needs tokens")

    result = cli("serve", stream_model, "--ssl-certfile", cert, *port)
    assert_clean_failure(result, None, "--ssl-certfile and --ssl-keyfile")
    result = cli(
        "serve", stream_model, "--ssl-certfile", cert, "--ssl-keyfile", tmp_path / "no.pem", *port
    )
    assert_clean_failure(result, None, "--ssl-keyfile", "no such file")
    result = cli("serve", stream_model, "--ssl-certfile", cert, "--ssl-keyfile", short, *port)
    assert_clean_failure(result, None, "not a matching PEM certificate")


def test_serve_help_lists_the_access_flags(cli: CliRunner) -> None:
    help_text = cli("serve", "--help").out
    for flag in (
        "--token-file",
        "--metrics-public",
        "--insecure-no-auth",
        "--ssl-certfile",
        "--ssl-keyfile",
        "--max-connections",
        "--body-timeout",
        "--token-streams",
    ):
        assert flag in help_text
