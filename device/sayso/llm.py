"""The local LLM (llama-cpp-python): streaming chat completion that can be stopped per token."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)


class LlamaLLM:
    """One llama.cpp model; not thread-safe, so one thread owns it."""

    def __init__(self, model_path: Path, context_tokens: int = 2048, threads: int = 0,
                 temperature: float = 0.3, max_tokens: int = 160):
        from llama_cpp import Llama

        self._llama = Llama(str(model_path), n_ctx=context_tokens, n_threads=threads or os.cpu_count(),
                            verbose=False)
        self.temperature, self.max_tokens = temperature, max_tokens

    def stream(self, messages: list[dict[str, str]], should_stop: Callable[[], bool] = lambda: False
               ) -> Iterator[str]:
        """Yield pieces of the answer; `should_stop` is read after every token.

        Leaving the stream closes llama-cpp's generator, which ends decoding at once.
        """
        stream = self._llama.create_chat_completion(
            messages=messages, stream=True, max_tokens=self.max_tokens, temperature=self.temperature)
        try:
            for chunk in stream:
                if should_stop():
                    return
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    yield piece
        finally:
            stream.close()
