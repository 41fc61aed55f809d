"""The local LLM (llama-cpp-python): streaming chat completion that can be stopped per token."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from llama_cpp import ChatCompletionRequestMessage, CreateChatCompletionStreamResponse

    Chunks = Generator[CreateChatCompletionStreamResponse, None, None]
    """What create_chat_completion(stream=True) returns."""

from sayso.answering.llama_abort import AbortWatch

log = logging.getLogger(__name__)


def generation_threads() -> int:
    """All cores but one: the audio path (capture, VAD, echo canceller, the voice) keeps a core.

    Generation is memory-bound and makes words far faster than they are spoken,
    so it loses little; sharing every core made answers start later and the
    audio fall behind (docs/bench.md).
    """
    return max(1, (os.cpu_count() or 2) - 1)


PROMPT_BATCH_TOKENS = 128
"""Prompt tokens llama.cpp evaluates per batch.

Its compute buffer holds a batch's activations and attention scores: at
llama-cpp-python's default of 512 a long history (a thousand tokens) made
30 MB of it resident, at 128 about 8 MB, and prompt processing is no
slower on one thread (docs/bench.md)."""


class LlamaLLM:
    """One llama.cpp model; not thread-safe, so one thread owns it."""

    name = "local"

    @classmethod
    def from_settings(cls, model_path: Path, s) -> LlamaLLM:
        return cls(model_path, s.context_tokens, s.threads, s.temperature, s.max_tokens, s.seed)

    def __init__(self, model_path: Path, context_tokens: int = 2048, threads: int = 0,
                 temperature: float = 0.3, max_tokens: int = 160, seed: int = -1):
        import llama_cpp
        from llama_cpp import LLAMA_DEFAULT_SEED, Llama

        self.model_path = Path(model_path)
        # Read, not mapped: llama.cpp repacks some weights (q4_K on x86) into a copy of its own, and
        # the mapped originals, read once to make it, would stay resident beside it (28 MB here).
        # Reading also brings every weight in at load, as warm() would have.
        self._llama = Llama(str(model_path), n_ctx=context_tokens, n_threads=threads or generation_threads(),
                            n_batch=PROMPT_BATCH_TOKENS, n_ubatch=PROMPT_BATCH_TOKENS, use_mmap=False,
                            seed=LLAMA_DEFAULT_SEED if seed < 0 else seed, verbose=False)
        self.seed, self.temperature, self.max_tokens = seed, temperature, max_tokens
        # Prompt processing runs inside one llama_decode call per batch: on a Pi a long history
        # takes seconds there, out of reach of anything checked between tokens.
        self._abort = AbortWatch(llama_cpp, self._llama._ctx.ctx)
        self.aborts = 0
        """How many times llama.cpp was stopped inside a decode."""
        self._formatter = _template_formatter(self._llama)

    @property
    def resumable(self) -> bool:
        """Whether `resume` can go on with an answer: the model carries its own chat template."""
        return self._formatter is not None

    def warm(self, system_prompt: str) -> None:
        """Prefill the system prompt, so the first answer is not slower.

        The weights are already in memory (read at load, not mapped page by page
        on a first forward pass), and llama-cpp-python keeps the prompt's tokens
        as the cached prefix that later prompts, all starting with the system prompt, reuse.
        """
        self.prefill([{"role": "system", "content": system_prompt}, {"role": "user", "content": "Hello."}])

    def prefill(self, messages: list[dict[str, str]], should_stop: Callable[[], bool] = lambda: False) -> None:
        """Evaluate `messages` into the prompt cache: a later prompt that begins with them reuses it."""
        try:
            with self._abort.watching(should_stop):
                for _ in self._llama.create_chat_completion(
                        messages=cast("list[ChatCompletionRequestMessage]", messages), max_tokens=1, stream=True):
                    pass
        except RuntimeError as e:
            if not self._abort.stopped:
                raise
            self.aborts += 1
            log.debug("llama.cpp aborted the prefill on request (%s)", e)

    def resume(self, messages: list[dict[str, str]], so_far: str, should_stop: Callable[[], bool] = lambda: False
               ) -> Iterator[str]:
        """Go on with an answer stopped after `so_far`: the prompt is the chat's, then those words.

        llama.cpp keeps what it last evaluated, so an answer stopped and resumed
        at once costs nothing; after a prefill only what it changed is evaluated again.
        """
        if self._formatter is None:
            raise RuntimeError("this model has no chat template to resume an answer with")
        chat = self._formatter(messages=messages)
        llama = self._llama
        prompt = llama.tokenize((chat.prompt + so_far).encode("utf-8"), add_bos=not chat.added_special, special=True)
        used = len(llama.tokenize(so_far.encode("utf-8"), add_bos=False, special=False))
        stream = cast("Generator[Any, None, None]", llama.create_completion(
            prompt=prompt, stream=True, max_tokens=max(1, self.max_tokens - used), temperature=self.temperature,
            seed=None if self.seed < 0 else self.seed, stop=chat.stop, stopping_criteria=chat.stopping_criteria))
        yield from self._pieces(stream, should_stop, lambda chunk: chunk["choices"][0].get("text"))

    def stream(self, messages: list[dict[str, str]], should_stop: Callable[[], bool] = lambda: False
               ) -> Iterator[str]:
        """Yield pieces of the answer; `should_stop` is read after every token.

        Leaving the stream closes llama-cpp's generator, which ends decoding at once.
        """
        stream = cast("Chunks", self._llama.create_chat_completion(
            messages=cast("list[ChatCompletionRequestMessage]", messages), stream=True, max_tokens=self.max_tokens,
            temperature=self.temperature, seed=None if self.seed < 0 else self.seed))
        yield from self._pieces(stream, should_stop, lambda chunk: chunk["choices"][0]["delta"].get("content"))

    def _pieces(self, stream: Generator[Any, None, None], should_stop: Callable[[], bool], text: Callable[[Any], object]
                ) -> Iterator[str]:
        """The text of llama-cpp's stream chunks, until it ends or `should_stop`."""
        try:
            with self._abort.watching(should_stop):
                for chunk in stream:
                    if should_stop():
                        return
                    piece = text(chunk)
                    if isinstance(piece, str) and piece:
                        yield piece
        except RuntimeError as e:
            if not self._abort.stopped:
                raise  # a decode that failed: only a stop asked for is a clean cancel
            self.aborts += 1
            log.debug("llama.cpp aborted on request (%s)", e)  # the clean cancel during prompt processing
        finally:
            stream.close()


def _template_formatter(llama) -> Callable[..., Any] | None:
    """The model's own chat template as llama-cpp-python renders it for create_chat_completion, or None
    when it answers with a built-in format instead (then an answer cannot be resumed part-way)."""
    from llama_cpp import llama_chat_format

    template = llama.metadata.get("tokenizer.chat_template")
    if not template or llama.chat_format != "chat_template.default":
        return None
    eos, bos = llama.token_eos(), llama.token_bos()
    return llama_chat_format.Jinja2ChatFormatter(
        template=template, eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
        bos_token=llama._model.token_get_text(bos) if bos != -1 else "", stop_token_ids=[eos])
