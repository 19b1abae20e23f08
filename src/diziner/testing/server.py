"""A real, scripted OpenAI-compatible HTTP server for tests and benchmarks.

``with TestServer() as srv:`` starts an asyncio HTTP/1.1 server (keep-alive, no
dependencies) on 127.0.0.1 and a free port in a background thread; ``srv.base_url`` is
the ``.../v1`` URL to give a client. Endpoints: ``POST /v1/chat/completions``,
``POST /v1/completions``, ``POST /v1/messages`` (Anthropic shape), ``GET /v1/models``
and ``GET /_stats`` (counters as JSON).

What it answers is scripted: ``set_responder(fn)`` with ``fn(request_json) -> str`` (the
message content), or a list of strings served in turn (the last one repeats). Faults are
injected with :class:`Faults`: fixed or random latency, 5xx, 429 with Retry-After, a hang
past the client's timeout, a malformed JSON body, truncated JSON content — by
probability (seeded) or as an explicit ``sequence`` for the next requests. Every request
is kept in ``srv.requests`` (path, headers, json) and counted in ``srv.counts``.

Command line, for manual use and for benchmarks in a separate process::

    python -m diziner.testing.server --port 8123 --latency-ms 200
"""
from __future__ import annotations

import asyncio
import collections
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

FAULT_KINDS = ("ok", "400", "401", "500", "503", "429", "hang", "malformed", "truncated", "close")


@dataclass
class Faults:
    """What goes wrong, and how often. ``sequence`` entries are used first, one per request."""

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0  # uniform extra latency in [0, jitter]
    p_500: float = 0.0
    p_429: float = 0.0
    retry_after_s: float | None = 1.0  # Retry-After header of a 429 (None: no header)
    p_hang: float = 0.0
    hang_s: float = 30.0
    p_malformed: float = 0.0  # 200 with a body that is not JSON
    p_truncated: float = 0.0  # 200, valid body, content JSON cut in half
    p_close: float = 0.0  # connection closed without an answer
    sequence: list[str] = field(default_factory=list)
    seed: int = 0

    def choose(self, rng: random.Random) -> str:
        if self.sequence:
            return self.sequence.pop(0)
        r = rng.random()
        for kind, p in (("500", self.p_500), ("429", self.p_429), ("hang", self.p_hang),
                        ("malformed", self.p_malformed), ("truncated", self.p_truncated), ("close", self.p_close)):
            if r < p:
                return kind
            r -= p
        return "ok"


Responder = Callable[[dict[str, Any]], str]


def default_responder(body: dict[str, Any]) -> str:
    return '{"mentions": []}'


def _words(body: dict[str, Any]) -> int:
    if "messages" in body:
        text = " ".join(str(m.get("content", "")) for m in body.get("messages") or [])
    else:
        text = str(body.get("prompt", ""))
    return max(1, len(text.split()))


class TestServer:
    """Context manager around the scripted server (runs in a daemon thread with its own loop)."""

    __test__ = False  # not a pytest test class

    def __init__(self, responder: Responder | list[str] | None = None, faults: Faults | None = None,
                 host: str = "127.0.0.1", port: int = 0, keep_requests: bool = True):
        self.host = host
        self.port = port
        self.keep_requests = keep_requests
        self.requests: list[dict[str, Any]] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._faults = faults or Faults()
        self._rng = random.Random(self._faults.seed)
        self._queue: list[str] | None = None
        self._responder: Responder = default_responder
        self.set_responder(responder)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._stop: asyncio.Event | None = None
        self._conns: set[asyncio.Task] = set()
        self.inflight = 0  # requests being answered now
        self.max_inflight = 0  # the most at once since start (or reset)

    # -- scripting ---------------------------------------------------------------------
    def set_responder(self, responder: Responder | list[str] | None) -> None:
        with self._lock:
            if responder is None:
                self._responder, self._queue = default_responder, None
            elif callable(responder):
                self._responder, self._queue = responder, None
            else:
                self._queue = list(responder)
                if not self._queue:
                    raise ValueError("responder list is empty")

    def set_faults(self, faults: Faults | None = None, **kw: Any) -> None:
        """Replace the fault config: ``set_faults(Faults(...))`` or ``set_faults(p_500=0.1, ...)``."""
        f = faults or Faults(**kw)
        with self._lock:
            self._faults = f
            self._rng = random.Random(f.seed)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.counts.clear()
            self.max_inflight = self.inflight

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def _content_for(self, body: dict[str, Any]) -> str:
        with self._lock:
            if self._queue is not None:
                return self._queue.pop(0) if len(self._queue) > 1 else self._queue[0]
            fn = self._responder
        return fn(body)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "TestServer":
        ready = threading.Event()
        err: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(ready))
            except BaseException as e:  # pragma: no cover - surfaced to start()
                err.append(e)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="diziner-test-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        if err:
            raise err[0]
        return self

    async def _serve(self, ready: threading.Event) -> None:
        self._stop = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=1024,
                                                  limit=2**24)
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()
        await self._stop.wait()
        self._server.close()
        for t in list(self._conns):
            t.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        await self._server.wait_closed()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> "TestServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP ----------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    method, target, _ = line.decode("latin-1").split(" ", 2)
                except ValueError:
                    break
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", "0") or 0)
                raw = await reader.readexactly(n) if n else b""
                keep = await self._dispatch(method, target.split("?", 1)[0], headers, raw, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            try:
                writer.close()
            except Exception:
                pass

    @staticmethod
    def _send(writer: asyncio.StreamWriter, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
                  500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Status")
        head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json",
                f"Content-Length: {len(body)}", "Connection: keep-alive"]
        for k, v in (extra or {}).items():
            head.append(f"{k}: {v}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    async def _dispatch(self, method: str, path: str, headers: dict[str, str], raw: bytes,
                        writer: asyncio.StreamWriter) -> bool:
        if method == "GET" and path == "/_stats":
            with self._lock:
                stats = dict(self.counts)
            self._send(writer, 200, json.dumps(stats).encode())
            await writer.drain()
            return True
        if method == "GET" and path == "/v1/models":
            self._send(writer, 200, json.dumps({"object": "list", "data": [
                {"id": "test-model", "object": "model", "owned_by": "diziner"}]}).encode())
            await writer.drain()
            return True
        kind_by_path = {"/v1/chat/completions": "chat", "/v1/completions": "completion", "/v1/messages": "messages"}
        if method != "POST" or path not in kind_by_path:
            self._send(writer, 404, b'{"error": {"message": "not found"}}')
            await writer.drain()
            return True
        kind = kind_by_path[path]
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send(writer, 400, b'{"error": {"message": "request body is not JSON"}}')
            await writer.drain()
            return True
        with self._lock:
            f = self._faults
            fault = f.choose(self._rng)
            latency = f.latency_ms + (self._rng.uniform(0, f.latency_jitter_ms) if f.latency_jitter_ms else 0.0)
            if self.keep_requests:
                self.requests.append({"path": path, "kind": kind, "headers": dict(headers), "json": body,
                                      "fault": fault, "ts": time.time()})
            self.counts["requests"] += 1
            self.counts[kind] += 1
            self.counts[f"fault:{fault}"] += 1
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            return await self._answer(kind, body, headers, fault, latency, f, writer)
        finally:
            with self._lock:
                self.inflight -= 1

    async def _answer(self, kind: str, body: dict[str, Any], headers: dict[str, str], fault: str, latency: float,
                      f: Faults, writer: asyncio.StreamWriter) -> bool:
        if latency > 0:
            await asyncio.sleep(latency / 1000.0)
        if fault == "hang":
            await asyncio.sleep(f.hang_s)
            return False
        if fault == "close":
            return False
        if fault == "400":
            self._send(writer, 400, b'{"error": {"message": "injected bad request", "type": "invalid_request_error"}}')
            await writer.drain()
            return True
        if fault == "401":
            # Some servers echo the key they got; clients must not pass it on.
            auth = headers.get("authorization", "") or headers.get("x-api-key", "")
            key = auth.removeprefix("Bearer ").strip()
            self._send(writer, 401, json.dumps({"error": {"message": f"Incorrect API key provided: {key}",
                                                          "type": "invalid_request_error"}}).encode())
            await writer.drain()
            return True
        if fault in ("500", "503"):
            self._send(writer, int(fault), json.dumps({"error": {"message": f"injected {fault}", "type": "server_error"}}).encode())
            await writer.drain()
            return True
        if fault == "429":
            extra = {"Retry-After": f"{f.retry_after_s:g}"} if f.retry_after_s is not None else {}
            self._send(writer, 429, json.dumps({"error": {"message": "injected rate limit", "type": "rate_limit"}}).encode(), extra)
            await writer.drain()
            return True
        if fault == "malformed":
            self._send(writer, 200, b'{"id": "x", "choices": [{"message": ')
            await writer.drain()
            return True
        try:
            content = self._content_for(body)
        except Exception as e:  # a broken responder is a 500 the test can see
            self._send(writer, 500, json.dumps({"error": {"message": f"responder failed: {e}"}}).encode())
            await writer.drain()
            return True
        if fault == "truncated":
            content = content[: max(1, len(content) // 2)]
        self._send(writer, 200, json.dumps(self._wrap(kind, body, content)).encode())
        await writer.drain()
        return True

    @staticmethod
    def _wrap(kind: str, body: dict[str, Any], content: str) -> dict[str, Any]:
        tin, tout = _words(body), max(1, len(content.split()))
        model = body.get("model", "test-model")
        now = int(time.time())
        if kind == "chat":
            return {"id": "chatcmpl-test", "object": "chat.completion", "created": now, "model": model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}}
        if kind == "completion":
            return {"id": "cmpl-test", "object": "text_completion", "created": now, "model": model,
                    "choices": [{"index": 0, "text": content, "finish_reason": "stop", "logprobs": None}],
                    "usage": {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}}
        # Anthropic messages: a forced tool gets a tool_use block with the parsed JSON
        blocks: list[dict[str, Any]]
        tools = body.get("tools") or []
        if tools:
            try:
                inp = json.loads(content)
            except ValueError:
                inp = {"_unparsed": content}
            blocks = [{"type": "tool_use", "id": "toolu_test", "name": tools[0].get("name", "tool"), "input": inp}]
            stop = "tool_use"
        else:
            blocks = [{"type": "text", "text": content}]
            stop = "end_turn"
        return {"id": "msg_test", "type": "message", "role": "assistant", "model": model, "content": blocks,
                "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": tin, "output_tokens": tout}}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import signal
    import sys

    ap = argparse.ArgumentParser(prog="python -m diziner.testing.server",
                                 description="Scripted OpenAI-compatible test server. Example: --port 8123 --latency-ms 200")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = a free port (printed on the first line)")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--latency-jitter-ms", type=float, default=0.0)
    ap.add_argument("--p-500", type=float, default=0.0)
    ap.add_argument("--p-429", type=float, default=0.0)
    ap.add_argument("--retry-after-s", type=float, default=1.0)
    ap.add_argument("--p-hang", type=float, default=0.0)
    ap.add_argument("--p-malformed", type=float, default=0.0)
    ap.add_argument("--p-truncated", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--content", default='{"mentions": []}', help="the message content of every answer")
    a = ap.parse_args(argv)
    faults = Faults(latency_ms=a.latency_ms, latency_jitter_ms=a.latency_jitter_ms, p_500=a.p_500, p_429=a.p_429,
                    retry_after_s=a.retry_after_s, p_hang=a.p_hang, p_malformed=a.p_malformed,
                    p_truncated=a.p_truncated, seed=a.seed)
    srv = TestServer([a.content], faults, host=a.host, port=a.port, keep_requests=False)
    srv.start()
    print(f"listening on {srv.base_url}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    srv.stop()
    print(json.dumps(dict(srv.counts)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
