"""Which LLM answers a turn: the LAN server when configured and healthy, else the local model.

The thinker holds one `FailoverLLM` and reads `last_answer` after each stream
for its metrics. A server that failed is skipped for a back-off that doubles
with each failure, then asked first again, so sayso returns to it without a
restart once it is back.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

from sayso.answering.llm_server import ServerLLM, ServerTimeouts
from sayso.answering.thinker import LLM, ResumableLLM
from sayso.config import LLMSettings, Settings
from sayso.errors import ConfigError, LLMServerFailed, LLMUnavailable, ModelCorrupt, ModelMissing
from sayso.models.manifest import ModelStore

log = logging.getLogger(__name__)

APOLOGY = "Sorry, I can't reach my answer server right now. Please ask me again in a minute."
"""Spoken when no backend can answer, so the person is not met with silence."""

RESTART = "Sorry, let me start that again. "
"""Spoken when the server broke off mid-answer and the local model answers afresh."""


class FailoverLLM:
    """The server first (unless it failed recently), the local model when the server cannot answer.

    Either may be None: a local-only appliance has no server, and a board without
    the local model has no fallback (then a failed server raises LLMUnavailable).

    Args:
        retry_s: how long a failed server is skipped at first; doubles per failure up to `retry_max_s`.
        clock: monotonic seconds (the back-off's clock).
    """

    def __init__(self, server: ServerLLM | None, local: LLM | None, retry_s: float = 5.0, retry_max_s: float = 120.0,
                 clock: Callable[[], float] = time.monotonic):
        if server is None and local is None:
            raise ValueError("FailoverLLM needs a server, a local model or both")
        self.server, self.local, self.clock = server, local, clock
        self.retry_s, self.retry_max_s = retry_s, retry_max_s
        self.failures = 0
        """Server failures in a row; 0 while it answers."""
        self.retry_at = 0.0
        """Clock time before which the server is not asked."""
        self.last_answer: dict = {}
        """Set at the start of each stream: backend ("server", "local" or "none"), fell_back (why; absent when
        the first choice answered) and fell_back_ms (when the server was given up), first_token_ms (from the
        stream's start, whoever gave it; absent until a piece came)."""

    @property
    def name(self) -> str:
        return "server" if self.server is not None else "local"

    @property
    def resumable(self) -> bool:
        """An answer can be left part-way and resumed when only the local model answers: a server's
        chat API cannot go on with an answer, and it spends none of this board's time while it waits."""
        return self.server is None and getattr(self.local, "resumable", False)

    def resume(self, messages: list[dict[str, str]], so_far: str, should_stop: Callable[[], bool] = lambda: False
               ) -> Iterator[str]:
        """Go on with the local model's answer after `so_far`."""
        return cast(ResumableLLM, self.local).resume(messages, so_far, should_stop)

    def stream(self, messages: list[dict[str, str]], should_stop: Callable[[], bool] = lambda: False
               ) -> Iterator[str]:
        """Yield the answer's pieces from whichever backend can give them.

        Raises:
            LLMUnavailable: the server failed and there is no local model; its `apology` is to be spoken.
        """
        t0 = self.clock()
        info = self.last_answer = {"backend": self.name}
        yielded = False

        def first(piece: str) -> str:
            nonlocal yielded
            if not yielded:
                yielded = True
                info["first_token_ms"] = round((self.clock() - t0) * 1000, 1)
            return piece

        why = ""
        if self.server is not None:
            if t0 < self.retry_at:
                why = "backing_off"
            else:
                try:
                    for piece in self.server.stream(messages, should_stop):
                        yield first(piece)
                    if yielded or not should_stop():  # a cancel before the first token proves nothing
                        self._server_answered()
                    return
                except LLMServerFailed as e:
                    why = "error_mid_answer" if yielded and e.why != "stalled" else e.why
                    self._server_failed(e)
        if should_stop():
            return
        given_up_ms = round((self.clock() - t0) * 1000, 1)
        if self.local is None:
            info.update(backend="none", fell_back=why, fell_back_ms=given_up_ms)
            raise LLMUnavailable(f"the LLM server failed ({why}) and no local model is installed to answer instead; "
                                 "run `sayso doctor` to check the server, or `sayso models fetch` for a fallback",
                                 APOLOGY, why)
        if why:
            info.update(backend="local", fell_back=why, fell_back_ms=given_up_ms)
        if yielded:
            yield RESTART
        for piece in self.local.stream(messages, should_stop):
            yield first(piece)

    def prefill(self, messages: list[dict[str, str]], should_stop: Callable[[], bool] = lambda: False) -> None:
        """Prefill the local model while it is the one answering; a server keeps its own cache."""
        local_prefill = getattr(self.local, "prefill", None)
        if local_prefill is not None and (self.server is None or self.clock() < self.retry_at):
            local_prefill(messages, should_stop)

    def warm(self, system_prompt: str) -> None:
        """Warm the local model, and have the server cache the system prompt as every turn's prefix.

        A server that cannot answer now is left to its back-off: the first turn goes to the local model.
        """
        warm_local = getattr(self.local, "warm", None)
        if warm_local is not None:
            warm_local(system_prompt)
        if self.server is not None:
            messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": "Hello."}]
            try:
                for _ in self.server.stream(messages, lambda: False, max_tokens=1):
                    pass
                self._server_answered()
            except LLMServerFailed as e:
                self._server_failed(e)

    def _server_answered(self) -> None:
        if self.failures:
            log.info("the LLM server answers again after %d failures", self.failures)
        self.failures, self.retry_at = 0, 0.0

    def _server_failed(self, e: LLMServerFailed) -> None:
        wait = min(self.retry_s * 2 ** self.failures, self.retry_max_s)
        self.failures += 1
        self.retry_at = self.clock() + wait
        log.warning("%s; %s for the next %.0f s", e, "the local model answers" if self.local else "no answers",
                    wait)


def read_api_key(s: LLMSettings) -> str:
    """The server's API key from its file or environment variable; '' when neither is set."""
    if s.server_api_key_file:
        path = Path(s.server_api_key_file)
        try:
            key = path.read_text().strip()
            if path.stat().st_mode & 0o004:
                log.warning("%s can be read by every user: `chmod o-r %s`", path, path)
            return key
        except OSError as e:
            raise ConfigError(f"llm.server_api_key_file: cannot read {path} ({e.strerror}); "
                              "make it readable by the user that runs sayso") from None
    if s.server_api_key_env:
        key = os.environ.get(s.server_api_key_env, "")
        if not key:
            raise ConfigError(f"llm.server_api_key_env: the environment variable {s.server_api_key_env} is not set")
        return key
    return ""


def server_llm(s: LLMSettings) -> ServerLLM:
    return ServerLLM(s.server_url, s.server_model, read_api_key(s),
                     ServerTimeouts(s.server_connect_timeout_s, s.server_first_token_s, s.server_idle_timeout_s),
                     s.max_tokens, s.temperature, s.seed)


def open_llm(settings: Settings, store: ModelStore) -> FailoverLLM:
    """The configured backend; with the server, the local model too when it is installed."""
    from sayso.answering.llm import LlamaLLM  # loads llama.cpp

    s = settings.llm
    if s.backend == "local":
        return FailoverLLM(None, LlamaLLM.from_settings(store.path(s.model, role="llm"), s))
    server = server_llm(s)
    try:
        local = LlamaLLM.from_settings(store.path(s.model, role="llm"), s)
    except (ModelMissing, ModelCorrupt) as e:
        log.warning("no local fallback for the LLM server: %s", e)
        local = None
    log.info("answers come from %r, with %s", server, "the local model as fallback" if local else "no fallback")
    return FailoverLLM(server, local)
