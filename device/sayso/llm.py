"""The local LLM (llama-cpp-python): streaming chat completion that can be stopped per token."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)


class LlamaLLM:
    """One llama.cpp model; not thread-safe, so one thread owns it."""

    @classmethod
    def from_settings(cls, model_path: Path, s) -> LlamaLLM:
        return cls(model_path, s.context_tokens, s.threads, s.temperature, s.max_tokens, s.seed)

    def __init__(self, model_path: Path, context_tokens: int = 2048, threads: int = 0,
                 temperature: float = 0.3, max_tokens: int = 160, seed: int = -1):
        from llama_cpp import LLAMA_DEFAULT_SEED, Llama

        self._llama = Llama(str(model_path), n_ctx=context_tokens, n_threads=threads or os.cpu_count(),
                            seed=LLAMA_DEFAULT_SEED if seed < 0 else seed, verbose=False)
        self.seed = seed
        self.temperature, self.max_tokens = temperature, max_tokens

    def stream(self, messages: list[dict[str, str]], should_stop: Callable[[], bool] = lambda: False
               ) -> Iterator[str]:
        """Yield pieces of the answer; `should_stop` is read after every token.

        Leaving the stream closes llama-cpp's generator, which ends decoding at once.
        """
        stream = self._llama.create_chat_completion(
            messages=messages, stream=True, max_tokens=self.max_tokens, temperature=self.temperature,
            seed=None if self.seed < 0 else self.seed)
        try:
            for chunk in stream:
                if should_stop():
                    return
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    yield piece
        finally:
            stream.close()
