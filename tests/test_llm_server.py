"""The LAN LLM backend against a real OpenAI-compatible server: llama-cpp-python's own, on 127.0.0.1.

The server runs the default GGUF in its own process, started by a fixture. A
cancel must return at once wherever the request is (connecting, waiting for the
server's prompt processing, streaming) and the server must stop generating; a
server that is gone, refuses, errs, hangs or breaks off hands the turn to the
local model, and the server is asked again once its back-off has passed.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from sayso import config
from sayso.answering.backends import APOLOGY, RESTART, FailoverLLM, read_api_key, server_llm
from sayso.answering.llm import LlamaLLM
from sayso.answering.llm_server import ServerLLM, ServerTimeouts
from sayso.errors import ConfigError, LLMServerFailed, LLMUnavailable
from waits import wait_until

MODEL = "qwen2.5-coder-0.5b-instruct-q4"
KEY = "sk-test-0123456789abcdef"
"""The API key the test server wants; a test checks it reaches no log line."""

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """llama-cpp-python's OpenAI-compatible server in its own process; its output is kept, line by line.

    `interrupt_requests False`: a new request does not cut the one being streamed, so the only
    thing that can stop a generation is the client going away, which is what the tests check.
    """

    def __init__(self, model: Path, port: int):
        self.model, self.port = model, port
        self.url = f"http://127.0.0.1:{port}/v1"
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc: subprocess.Popen | None = None

    def start(self) -> LlamaServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--host", "127.0.0.1",
             "--port", str(self.port), "--n_ctx", "4096", "--n_threads", "2", "--api_key", KEY,
             "--interrupt_requests", "False"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # its disconnect notice is a print()
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()
        if not self.wait_for("Uvicorn running on", 120):
            self.stop()
            raise RuntimeError("llama_cpp.server did not start:\n" + "".join(self.lines[-30:]))
        return self

    def _read(self, out) -> None:
        for line in out:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def mark(self) -> int:
        with self._changed:
            return len(self.lines)

    def wait_for(self, text: str, timeout_s: float, since: int = 0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: any(text in line for line in self.lines[since:]), timeout_s)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class SilentStub:
    """A stub, not a server: the kernel accepts TCP connections on its backlog, and nothing ever answers."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def close(self) -> None:
        self.sock.close()


class FullBacklogStub:
    """A stub whose listen backlog is full, so a new connection's SYN is dropped: connecting hangs."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.fillers = []
        for _ in range(4):  # Linux keeps backlog + 1 pending; a few more make sure of it
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(self.sock.getsockname())
            self.fillers.append(c)

    def close(self) -> None:
        for c in self.fillers:
            c.close()
        self.sock.close()


class StallingStub:
    """A stub that answers 200, sends one piece of an answer, then goes silent (a server stuck mid-answer)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            event = b'data: {"choices": [{"delta": {"content": "The"}}]}\n\n'
            conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
            self.done.wait(30)

    def close(self) -> None:
        self.done.set()
        self.sock.close()


@pytest.fixture(scope="module")
def gguf(store) -> Path:
    return store.path(MODEL, role="llm")


@pytest.fixture(scope="module")
def server(gguf):
    s = LlamaServer(gguf, free_port()).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def local(gguf) -> LlamaLLM:
    """The local fallback, as on the appliance: the same model, answers kept short."""
    return LlamaLLM(gguf, context_tokens=2048, max_tokens=24, seed=1)


def client(url: str, max_tokens: int = 24, key: str = KEY, first_token_s: float = 30.0, **kw) -> ServerLLM:
    # A first-token timeout far above a 2-core machine's prompt processing: these tests are not about it.
    return ServerLLM(url, api_key=key, timeouts=ServerTimeouts(kw.pop("connect_s", 2.0), first_token_s,
                                                               kw.pop("idle_s", 10.0)),
                     max_tokens=max_tokens, seed=1, **kw)


def ask(question: str, history: int = 0, nonce: str = "") -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": f"{nonce}You are a voice assistant. Answer in short sentences."}]
    for i in range(history):
        msgs += [{"role": "user", "content": f"Tell me something about the number {i} in history and science."},
                 {"role": "assistant", "content": f"The number {i} turns up in counting, measuring and in "
                                                  "many old stories about the stars and the seasons."}]
    return msgs + [{"role": "user", "content": question}]


def stream_and_cancel(llm, messages, after_pieces: int = 0, when: Callable[[], bool] | None = None) -> list[str]:
    """Stream; set the cancel from another thread once `after_pieces` came, or once `when()` returns True.

    `when` may block; by default it waits until the stream has looked at the cancel ten times, so the
    request is under way. At most one piece may follow the cancel (taken off the queue just before
    it): the thinker drops it. How fast the stream returns is `sayso bench`'s to measure.
    """
    cancel, pieces, polls, late = threading.Event(), [], [0], 0

    def should_stop() -> bool:
        polls[0] += 1
        return cancel.is_set()

    def fire() -> None:
        if (when or (lambda: wait_until(lambda: polls[0] >= 10)))():
            cancel.set()

    if after_pieces == 0:
        threading.Thread(target=fire, daemon=True).start()
    for piece in llm.stream(messages, should_stop):
        late += cancel.is_set()
        pieces.append(piece)
        if len(pieces) == after_pieces:
            threading.Thread(target=cancel.set, daemon=True).start()
    assert cancel.is_set(), "the stream ended before the cancel"
    assert late <= 1
    return pieces


def requests_in_flight() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "llm-server-request" and t.is_alive()}


# ---- a real server: streaming, cancel, prefix cache, two appliances


@pytest.mark.slow
def test_streams_an_answer(server):
    llm = FailoverLLM(client(server.url), local=None)
    pieces = list(llm.stream(ask("What is the capital of France?")))
    assert len(pieces) > 2 and "paris" in "".join(pieces).lower()
    assert llm.last_answer["backend"] == "server" and "fell_back" not in llm.last_answer
    assert llm.last_answer["first_token_ms"] > 0


@pytest.mark.slow
def test_cancel_mid_answer_closes_the_stream_and_the_server_stops(server):
    llm = client(server.url, max_tokens=400)
    for i in range(10):
        mark = server.mark()
        pieces = stream_and_cancel(llm, ask(f"Count from {i} to 300, one number a line."), after_pieces=3)
        assert len(pieces) >= 3
        # the server's side: it saw the client go and stopped its generator
        assert server.wait_for("Disconnected from client", 10, since=mark), "".join(server.lines[mark:])
    # Nothing is still generating the 400-token answers: the server (one request at a time) answers
    # the next question within a first-token timeout. Ten unfinished answers would hold it for minutes.
    first = next(iter(client(server.url, first_token_s=10.0).stream(ask("Say OK."))))
    assert first


@pytest.mark.slow
def test_cancel_during_prompt_processing_returns_at_once(server):
    # ~1,500 prompt tokens, new to the server (the nonce defeats its prefix cache): seconds of prompt
    # processing on 2 cores, during which the server has sent nothing, not even its headers
    messages = ask("What is the capital of France?", history=24, nonce=f"[{uuid.uuid4()}] ")
    list(client(server.url, max_tokens=1).stream(ask("Say OK.")))  # a context for the prefix match below
    mark = server.mark()
    # the server's word that it is at the prompt: "Llama.generate: 5 prefix-match hit, remaining 1500 ..."
    pieces = stream_and_cancel(client(server.url), messages,
                               when=lambda: server.wait_for("prefix-match hit", 60, since=mark))
    returned = server.mark()
    assert pieces == []
    # llama-cpp-python's server only notices once its prompt processing ends; then it drops the answer.
    # The stream had returned before that: it did not wait for the server.
    assert server.wait_for("Disconnected from client", 120, since=mark)
    assert not any("Disconnected from client" in line for line in server.lines[mark:returned])


@pytest.mark.slow
def test_a_repeated_prefix_is_served_from_the_servers_cache(server):
    assert client(server.url).body(ask("x"))["cache_prompt"] is True  # llama-server's own prompt cache
    history = ask("What is the capital of France?", history=12, nonce=f"[{uuid.uuid4()}] ")
    llm = FailoverLLM(client(server.url, max_tokens=4), local=None)
    list(llm.stream(history))
    mark = server.mark()
    list(llm.stream(history[:-1] + [{"role": "user", "content": "And of Germany?"}]))
    # the server's own word: "Llama.generate: 700 prefix-match hit, remaining 12 prompt tokens to eval"
    assert server.wait_for("prefix-match hit", 10, since=mark), "".join(server.lines[mark:])
    hit = next(line for line in server.lines[mark:] if "prefix-match hit" in line)
    assert int(hit.split("Llama.generate:")[1].split()[0]) > 500, hit


# ---- failures: each hands the turn to the local model


@pytest.mark.slow
def test_a_refusing_server_falls_back_to_the_local_model(local):
    llm = FailoverLLM(client(f"http://127.0.0.1:{free_port()}/v1"), local)
    answer = "".join(llm.stream(ask("What is the capital of France?")))
    assert "paris" in answer.lower()
    assert llm.last_answer["backend"] == "local" and llm.last_answer["fell_back"] == "refused"


@pytest.mark.slow
@pytest.mark.parametrize("path, key, why", [("/nowhere/v1", KEY, "http_404"), ("/v1", "wrong-key", "http_401")])
def test_a_wrong_url_or_key_falls_back(server, local, path, key, why):
    llm = FailoverLLM(client(f"http://127.0.0.1:{server.port}{path}", key=key), local)
    answer = "".join(llm.stream(ask("What is the capital of France?")))
    assert answer and llm.last_answer["backend"] == "local" and llm.last_answer["fell_back"] == why


@pytest.mark.slow
def test_a_server_that_never_answers_falls_back_within_the_first_token_timeout(local):
    stub = SilentStub()
    try:
        llm = FailoverLLM(client(stub.url, first_token_s=1.0), local)
        answer = "".join(llm.stream(ask("What is the capital of France?")))
    finally:
        stub.close()
    info = llm.last_answer
    # given up on for want of a first token (not some other timeout), and not before it was due
    assert answer and info["fell_back"] == "no_first_token" and info["fell_back_ms"] >= 1000


@pytest.mark.slow
def test_a_server_stuck_mid_answer_is_left_after_the_idle_timeout(local):
    stub = StallingStub()
    try:
        llm = FailoverLLM(client(stub.url, idle_s=0.5), local)
        pieces = list(llm.stream(ask("What is the capital of France?")))
    finally:
        stub.close()
    assert pieces[:2] == ["The", RESTART] and "paris" in "".join(pieces[2:]).lower()
    assert llm.last_answer["fell_back"] == "stalled"


@pytest.mark.slow
def test_a_server_killed_mid_answer_hands_over_then_is_used_again_when_back(gguf, local):
    now = [0.0]
    srv = LlamaServer(gguf, free_port()).start()
    try:
        llm = FailoverLLM(client(srv.url, max_tokens=200), local, retry_s=5.0, clock=lambda: now[0])
        pieces = []
        for piece in llm.stream(ask("Count from 1 to 100, one number a line.")):
            pieces.append(piece)
            if len(pieces) == 3:
                srv.proc.kill()
        assert RESTART in pieces and pieces.index(RESTART) >= 3
        assert llm.last_answer["backend"] == "local" and llm.last_answer["fell_back"] == "error_mid_answer"
        # within the back-off, the server is not asked: no time is lost on it
        list(llm.stream(ask("What is the capital of France?")))
        assert llm.last_answer["fell_back"] == "backing_off"
        srv.stop()
        srv = LlamaServer(gguf, srv.port).start()
        now[0] += 5.0
        answer = "".join(llm.stream(ask("What is the capital of France?")))
        assert "paris" in answer.lower() and llm.last_answer["backend"] == "server"
        assert "fell_back" not in llm.last_answer and llm.failures == 0
    finally:
        srv.stop()


@pytest.mark.slow
def test_warming_prefills_the_server_and_leaves_a_dead_one_to_its_back_off(server, local):
    llm = FailoverLLM(client(server.url), local)
    llm.warm("You are a voice assistant.")
    assert llm.failures == 0
    dead = FailoverLLM(client(f"http://127.0.0.1:{free_port()}/v1"), local)
    dead.warm("You are a voice assistant.")
    assert dead.failures == 1
    list(dead.stream(ask("hello")))
    assert dead.last_answer["fell_back"] == "backing_off"


def test_with_no_local_model_a_failed_server_raises_an_apology():
    llm = FailoverLLM(client(f"http://127.0.0.1:{free_port()}/v1"), local=None)
    with pytest.raises(LLMUnavailable) as e:
        list(llm.stream(ask("What is the capital of France?")))
    assert e.value.apology == APOLOGY and e.value.why == "refused"
    assert llm.last_answer["backend"] == "none" and llm.last_answer["fell_back"] == "refused"


def test_a_turn_cancelled_before_the_servers_first_token_keeps_its_back_off():
    now = [0.0]
    llm = FailoverLLM(client(f"http://127.0.0.1:{free_port()}/v1"), local=None, retry_s=5.0, clock=lambda: now[0])
    with pytest.raises(LLMUnavailable):
        list(llm.stream(ask("hello")))
    now[0] += 5.0
    assert list(llm.stream(ask("hello"), lambda: True)) == []
    assert llm.failures == 1 and llm.retry_at == 5.0


# ---- cancel while connecting or waiting: no model needed


def test_a_cancel_while_connecting_returns_at_once():
    stub = FullBacklogStub()
    try:
        with pytest.raises(LLMServerFailed) as e:
            list(client(stub.url, connect_s=0.5).stream(ask("hello")))
        assert e.value.why == "connect_timeout", "the stub must make connecting hang"
        for _ in range(3):
            before = requests_in_flight()
            assert stream_and_cancel(client(stub.url, connect_s=5.0), ask("hello")) == []
            # returned while its request was still stuck connecting: it did not wait for the connect
            assert requests_in_flight() - before
    finally:
        stub.close()


def test_a_cancel_while_the_server_is_silent_returns_at_once():
    stub = SilentStub()
    try:
        # a stream that did not honour the cancel would raise no_first_token after 5 s
        assert stream_and_cancel(client(stub.url, first_token_s=5.0), ask("hello")) == []
    finally:
        stub.close()


# ---- settings and the key


def test_the_server_backend_needs_a_url_and_one_key_source():
    with pytest.raises(ConfigError, match="server_url"):
        config.parse({"llm": {"backend": "server"}})
    with pytest.raises(ConfigError, match="both set"):
        config.parse({"llm": {"server_api_key_file": "/k", "server_api_key_env": "K"}})
    s = config.parse({"llm": {"backend": "server", "server_url": "http://192.168.1.20:8080/v1"}})
    assert s.llm.server_first_token_s == 6.0


def test_the_key_is_read_from_a_file_or_the_environment_and_never_shown(tmp_path, monkeypatch, caplog):
    keyfile = tmp_path / "llm-api-key"
    keyfile.write_text(KEY + "\n")
    s = config.parse({"llm": {"backend": "server", "server_url": f"http://127.0.0.1:{free_port()}/v1",
                              "server_api_key_file": str(keyfile)}}).llm
    assert read_api_key(s) == KEY
    monkeypatch.setenv("SAYSO_LLM_API_KEY", KEY)
    assert read_api_key(config.parse({"llm": {"server_api_key_env": "SAYSO_LLM_API_KEY"}}).llm) == KEY
    with pytest.raises(ConfigError, match="NO_SUCH_VAR"):
        read_api_key(config.parse({"llm": {"server_api_key_env": "NO_SUCH_VAR"}}).llm)
    assert KEY not in config.template()
    caplog.set_level(logging.DEBUG)  # httpx and httpcore log every request at DEBUG
    server = server_llm(s)
    with pytest.raises(LLMUnavailable):
        list(FailoverLLM(server, None).stream(ask("hello")))
    assert KEY not in caplog.text and KEY not in repr(server)


# ---- sayso doctor


@pytest.mark.slow
def test_doctor_checks_the_server_answers_and_names_the_fix(server, store, tmp_path):
    from sayso.service.doctor import FAIL, OK, Doctor

    keyfile = tmp_path / "key"
    keyfile.write_text(KEY)
    good = config.parse({"llm": {"backend": "server", "server_url": server.url,
                                 "server_api_key_file": str(keyfile), "server_first_token_s": 30.0}})
    check = Doctor(good, store).llm_server()
    assert check.status == OK and "answered" in check.detail, check
    wrong = config.parse({"llm": {"backend": "server", "server_url": server.url, "server_model": "llama3:70b",
                                  "server_api_key_file": str(keyfile)}})
    check = Doctor(wrong, store).llm_server()
    assert check.status == FAIL and "not 'llama3:70b'" in check.detail
    gone = config.parse({"llm": {"backend": "server", "server_url": f"http://127.0.0.1:{free_port()}/v1"}})
    check = Doctor(gone, store).llm_server()
    assert check.status == FAIL and "refused" in check.detail and "--host 0.0.0.0" in check.fix


# ---- the whole pipeline on the server backend (fake voice and sound card, real turn log)


class Pipeline:
    """The engine answering from `llm`; `finished` waits for a turn's end, an event set by the bus."""

    def __init__(self, tmp_path: Path, llm):
        from sayso.engine import Engine
        from sayso.pipeline.turnlog import TurnLog
        from sayso.sim.fakes import FakeSpeakerSink, FakeTTS

        self.llm, self.events, self._changed = llm, [], threading.Condition()
        self.engine = Engine(llm=llm, tts=FakeTTS(), sink=FakeSpeakerSink(), turnlog=TurnLog(tmp_path / "turns.db"),
                             observers=[self._seen])
        self.engine.start()

    def _seen(self, event) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def wait(self, type_: str, since: int, timeout_s: float = 60.0):
        def found():
            return next((e for e in self.events[since:] if e.type == type_), None)
        with self._changed:
            assert self._changed.wait_for(found, timeout_s), f"no {type_}: {[e.type for e in self.events[since:]]}"
            return found()

    def ask(self, text: str) -> int:
        from sayso.pipeline.messages import SpeechStarted, Utterance

        with self._changed:
            since = len(self.events)
        self.engine.conductor.post(SpeechStarted(time.monotonic_ns()))
        self.engine.conductor.post(Utterance(text, time.monotonic_ns()))
        return since

    def row(self, since: int) -> dict:
        return self.engine.turnlog.get(self.wait("turn_finished", since).data["turn"])


@pytest.mark.slow
def test_the_pipeline_answers_from_the_server_and_a_button_stops_it(server, local, tmp_path):
    llm = FailoverLLM(client(server.url, max_tokens=200), local)
    p = Pipeline(tmp_path, llm)
    try:
        row = p.row(p.ask("what is the capital of france"))
        assert row["status"] == "complete" and "paris" in row["text"].lower() and row["heard_text"] == row["text"]
        assert llm.last_answer["backend"] == "server"
        on_local = Pipeline(tmp_path / "local", FailoverLLM(None, local))
        try:
            on_local.row(on_local.ask("what is the capital of france"))
            local_row = on_local.row(on_local.ask("and of germany"))
        finally:
            on_local.engine.stop()
        server_row = p.row(p.ask("and of germany"))
        ms = [r["metrics"]["eos_to_first_audio_ms"] for r in (server_row, local_row)]
        print(f"\nend of speech to first audio, a follow-up: server {ms[0]:.0f} ms, local {ms[1]:.0f} ms "
              "(one model, the same 2 cores)")
        stopped = 0
        for i in range(10):
            since, mark = p.ask(f"tell me a long story about a dragon called number {i}"), server.mark()
            p.wait("first_token", since)
            assert p.engine.conductor.interrupt("full", "button")
            row = p.row(since)
            assert (row["status"], row["interrupt_reason"]) == ("interrupted", "button")
            if "interrupt_to_llm_stop_ms" in row["metrics"]:  # absent when the answer was all out already
                stopped += 1
                assert server.wait_for("Disconnected from client", 10, since=mark)
        assert stopped >= 8, "the button came after most answers were all out: it proved little"
    finally:
        p.engine.stop()


def test_with_no_backend_to_answer_the_turn_ends_as_an_error_and_the_appliance_listens_on(tmp_path):
    p = Pipeline(tmp_path, FailoverLLM(client(f"http://127.0.0.1:{free_port()}/v1"), local=None))
    try:
        row = p.row(p.ask("what is the capital of france"))
        assert (row["status"], row["interrupt_reason"]) == ("interrupted", "error")
        # never met with silence: the apology is spoken, and heard whole
        assert row["text"] == row["heard_text"] == APOLOGY
        assert row["metrics"]["llm_backend"] == "none" and row["metrics"]["llm_fell_back"] == "refused"
        assert p.engine.conductor.wait_state("idle", 10)
        assert p.llm.last_answer["fell_back"] == "refused"
    finally:
        p.engine.stop()


@pytest.mark.slow
def test_two_appliances_share_one_server(server, tmp_path):
    appliances = [Pipeline(tmp_path / f"appliance{i}", FailoverLLM(client(server.url, max_tokens=24), local=None))
                  for i in range(2)]
    try:
        asked = [p.ask("what is the capital of france") for p in appliances]
        rows = [p.row(since) for p, since in zip(appliances, asked, strict=True)]
    finally:
        for p in appliances:
            p.engine.stop()
    assert all(r["status"] == "complete" and "paris" in r["text"].lower() for r in rows)
    assert all(p.llm.last_answer["backend"] == "server" for p in appliances)
    ms = sorted(r["metrics"]["eos_to_first_audio_ms"] for r in rows)
    print(f"\ntwo appliances asking one server at once: end of speech to first audio {ms[0]:.0f} and {ms[1]:.0f} ms")


@pytest.mark.slow
def test_the_pipeline_keeps_the_turn_log_whole_when_the_server_dies_mid_answer(gguf, local, tmp_path):
    srv = LlamaServer(gguf, free_port()).start()
    llm = FailoverLLM(client(srv.url, max_tokens=40), local)
    p = Pipeline(tmp_path, llm)
    try:
        since = p.ask("count from one to twenty in words")
        p.wait("first_token", since)
        srv.proc.kill()
        row = p.row(since)
        assert llm.last_answer["fell_back"] == "error_mid_answer"
        assert row["status"] == "complete" and row["heard_text"] == row["text"]
        assert RESTART.strip() in row["text"]
    finally:
        p.engine.stop()
        srv.stop()


@pytest.mark.slow
def test_a_scenario_runs_the_whole_pipeline_on_the_server(server, store, tmp_path):
    """The simulated room, the mic, VAD, recogniser, voice and speaker, with the answers from the server."""
    from sayso.sim import scenario
    from sayso.sim.simulate import Kit, Simulation

    keyfile = tmp_path / "key"
    keyfile.write_text(KEY)
    settings = config.parse({"llm": {"backend": "server", "server_url": server.url, "server_first_token_s": 30.0,
                                     "server_api_key_file": str(keyfile)}})
    kit = Kit.load(settings, store)
    assert kit.llm.name == "server" and kit.llm.local is not None
    plan = scenario.load(Path(__file__).parent / "scenarios" / "barge_in_then_button.toml")
    report = Simulation(plan, kit, settings, tmp_path / "turns.db", wait_timeout_s=90.0).run().report
    # an answer superseded because the person went on ("Stop." ... "Tell me") is not part of what was said
    turns = [(r["role"], r["status"], r["interrupt_reason"]) for r in report["turns"]
             if r["interrupt_reason"] != "superseded"]
    assert turns == [("user", "complete", None), ("assistant", "interrupted", "user_speaking"),
                     ("user", "complete", None), ("assistant", "interrupted", "button")]
    assert kit.llm.last_answer["backend"] == "server" and "fell_back" not in kit.llm.last_answer
    print(f"\nscenario on the server backend: {report['summary']}")
