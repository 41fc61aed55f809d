"""An OpenAI-compatible LLM server on the LAN (llama-server, Ollama, vLLM) as the thinker's LLM.

The request runs on its own thread and hands pieces over a queue, so the
thinker's thread never blocks on the network: it polls `should_stop` every
`POLL_S` while it waits, whether the request is connecting, waiting for the
server's prompt processing or between tokens. A cancel shuts the socket down
from the thinker's thread; the server sees the client gone and stops
generating (llama-server and llama-cpp-python's server check between tokens).
"""

from __future__ import annotations

import errno
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from sayso.errors import LLMServerFailed

log = logging.getLogger(__name__)

POLL_S = 0.01
"""How often a wait on the network looks at `should_stop`: the bound on a cancel's latency there."""


@dataclass(frozen=True)
class ServerTimeouts:
    """Every network wait is bounded by one of these; a breach counts as the server failing."""

    connect_s: float = 2.0
    """Opening the TCP connection (and TLS)."""
    first_token_s: float = 6.0
    """From asking to the first piece of the answer: the server's queue plus its prompt processing."""
    idle_s: float = 5.0
    """Between two pieces once the answer flows."""


class ServerLLM:
    """Streams chat completions from one server; one request at a time, from one thread (the thinker's).

    Args:
        url: the server's OpenAI-compatible base URL, ending in /v1 (http://192.168.1.20:8080/v1).
        model: the model name to ask for; empty sends none (llama-server serves the one it loaded).
        api_key: sent as a bearer token; never logged.
    """

    name = "server"

    def __init__(self, url: str, model: str = "", api_key: str = "", timeouts: ServerTimeouts = ServerTimeouts(),
                 max_tokens: int = 160, temperature: float = 0.3, seed: int = -1):
        self.url, self.model, self.timeouts = url.rstrip("/"), model, timeouts
        self.max_tokens, self.temperature, self.seed = max_tokens, temperature, seed
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # A new connection per answer: a cancel shuts that socket down, so none is ever reused half-read.
        # The read timeout only frees a worker whose server went silent; the waits that count are ours.
        # trust_env=False: the server is on the LAN, so no HTTP_PROXY from the environment and no ~/.netrc.
        self._client = httpx.Client(
            headers=headers, limits=httpx.Limits(max_keepalive_connections=0), trust_env=False,
            timeout=httpx.Timeout(connect=timeouts.connect_s, read=max(timeouts.first_token_s, timeouts.idle_s) + 1,
                                  write=timeouts.connect_s, pool=timeouts.connect_s))

    def __repr__(self) -> str:  # never the key
        return f"ServerLLM({self.url!r}, model={self.model!r})"

    def body(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> dict:
        """The request: the same message prefix every turn, and llama.cpp's prompt cache asked for."""
        body = {"messages": messages, "stream": True, "max_tokens": max_tokens or self.max_tokens,
                "temperature": self.temperature, "cache_prompt": True}
        if self.model:
            body["model"] = self.model
        if self.seed >= 0:
            body["seed"] = self.seed
        return body

    def stream(self, messages: list[dict[str, str]], should_stop: Callable[[], bool] = lambda: False,
               max_tokens: int | None = None) -> Iterator[str]:
        """Yield pieces of the answer; return within `POLL_S` of `should_stop()` turning true.

        Raises:
            LLMServerFailed: the server could not be reached, refused, answered with an HTTP error, sent no
                first token or went silent within its timeout, or broke off the answer.
        """
        request = _Request(self._client, self.url + "/chat/completions", self.body(messages, max_tokens))
        request.start()
        t = self.timeouts
        deadline, got = time.monotonic() + t.first_token_s, False
        try:
            while True:
                if should_stop():
                    return
                try:
                    kind, value = request.events.get(timeout=POLL_S)
                except queue.Empty:
                    if time.monotonic() > deadline:
                        raise LLMServerFailed("stalled" if got else "no_first_token",
                                              f"nothing from {self.url} in {t.idle_s if got else t.first_token_s:g} s"
                                              ) from None
                    continue
                if kind == "piece":
                    got, deadline = True, time.monotonic() + t.idle_s
                    yield value
                elif kind == "done":
                    return
                else:
                    if got and value.why == "closed":
                        raise LLMServerFailed("error_mid_answer", str(value)) from value
                    raise value
        finally:
            request.cancel()

    def models(self) -> list[str]:
        """The model names the server lists (GET /models), for `sayso doctor`."""
        try:
            r = self._client.get(self.url + "/models")
        except httpx.HTTPError as e:
            raise _failure(e) from e
        if r.status_code != 200:
            raise LLMServerFailed(f"http_{r.status_code}", _excerpt(r.text))
        try:
            return [m.get("id", "") for m in r.json().get("data", [])]
        except (ValueError, AttributeError, TypeError):
            raise LLMServerFailed("bad_reply", f"GET /models: {_excerpt(r.text)}") from None

    def close(self) -> None:
        self._client.close()


class _Request(threading.Thread):
    """One streamed completion on its own thread; `cancel` may be called from any thread, at any time."""

    def __init__(self, client: httpx.Client, url: str, body: dict):
        super().__init__(name="llm-server-request", daemon=True)
        self.client, self.url, self.body = client, url, body
        self.events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        """("piece", str), ("done", None) or ("failed", LLMServerFailed)."""
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._cancelled = False

    def cancel(self) -> None:
        """Close the stream: a shut-down socket wakes the worker's read and tells the server the client left."""
        with self._lock:
            self._cancelled = True
            _shutdown(self._sock)

    def _trace(self, event: str, info: dict) -> None:
        """httpcore's trace hook, on the worker: keep the connection's socket so `cancel` can reach it."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            sock = info["return_value"].get_extra_info("socket")
            with self._lock:
                self._sock = sock
                if self._cancelled:  # cancelled while connecting: the thinker has already left
                    _shutdown(sock)

    def run(self) -> None:
        try:
            with self.client.stream("POST", self.url, json=self.body, extensions={"trace": self._trace}) as r:
                if r.status_code != 200:
                    raise LLMServerFailed(f"http_{r.status_code}", _excerpt(r.read().decode("utf-8", "replace")))
                for line in r.iter_lines():
                    if self._cancelled:
                        return
                    if not line.startswith("data:"):
                        continue  # blank separators, ": ping" comments, "event:" lines
                    data = line[5:].strip()
                    if data == "[DONE]":
                        self.events.put(("done", None))
                        return
                    piece = _piece(data)
                    if piece:
                        self.events.put(("piece", piece))
            raise LLMServerFailed("closed", "the server ended the stream without [DONE]")
        except LLMServerFailed as e:
            if not self._cancelled:
                self.events.put(("failed", e))
        except (httpx.HTTPError, OSError) as e:
            if not self._cancelled:
                self.events.put(("failed", _failure(e)))


def _piece(data: str) -> str:
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError:
        raise LLMServerFailed("bad_reply", f"not JSON: {_excerpt(data)}") from None
    try:
        if "error" in chunk:  # llama-server reports a failure mid-stream this way
            raise LLMServerFailed("server_error", _excerpt(json.dumps(chunk["error"])))
        choices = chunk.get("choices") or [{}]
        piece = (choices[0].get("delta") or {}).get("content") or ""
    except (AttributeError, TypeError) as e:  # not the shape of a chat completion chunk
        raise LLMServerFailed("bad_reply", f"{e}: {_excerpt(data)}") from None
    if not isinstance(piece, str):
        raise LLMServerFailed("bad_reply", _excerpt(data))
    return piece


def _failure(e: Exception) -> LLMServerFailed:
    """Name what went wrong in a word the metrics can count."""
    if isinstance(e, httpx.ConnectTimeout):
        why = "connect_timeout"
    elif isinstance(e, httpx.ConnectError):
        refused = isinstance(e.__context__, ConnectionRefusedError) or "refused" in str(e).lower()
        why = "refused" if refused else "unreachable"
    elif isinstance(e, httpx.TimeoutException):
        why = "timeout"
    elif isinstance(e, (httpx.RemoteProtocolError, httpx.ReadError, ConnectionResetError)):
        why = "closed"
    else:
        why = "error"
    return LLMServerFailed(why, f"{type(e).__name__}: {e}")


def _shutdown(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError as e:
        if e.errno not in (errno.ENOTCONN, errno.EBADF):
            log.debug("shutting the server socket down: %s", e)


def _excerpt(text: str, n: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "..."
