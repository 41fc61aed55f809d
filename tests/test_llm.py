"""The real LLM (llama.cpp): cancel within one token, and during prompt processing."""

import threading
import time

import pytest

from sayso.answering.llm import LlamaLLM
from sayso.config import LLMSettings


@pytest.fixture(scope="module")
def llm(store):
    return LlamaLLM.from_settings(store.path("qwen2.5-coder-0.5b-instruct-q4", role="llm"),
                                  LLMSettings(context_tokens=4096))


def long_history(turns: int) -> list[dict]:
    msgs = [{"role": "system", "content": "You are a voice assistant. Answer in one short sentence."}]
    for i in range(turns):
        msgs += [{"role": "user", "content": f"Tell me something about the number {i} in history and science."},
                 {"role": "assistant", "content": f"The number {i} turns up in counting, measuring and in "
                                                  "many old stories about the stars and the seasons."}]
    return msgs + [{"role": "user", "content": "What is the capital of France?"}]


def test_cancel_during_generation_stops_within_one_token(llm):
    pieces, cancel = [], threading.Event()
    set_at = []
    for piece in llm.stream(long_history(0), cancel.is_set):
        pieces.append(piece)
        if len(pieces) == 3:
            threading.Timer(0.01, lambda: (set_at.append(time.perf_counter()), cancel.set())).start()
    stop_ms = (time.perf_counter() - set_at[0]) * 1000 if set_at else float("nan")
    print(f"\ninterrupt_to_llm_stop during generation: {stop_ms:.1f} ms")
    assert 3 <= len(pieces) <= 5  # the cancel lands within about one token of being set
    # the stream itself honours should_stop: nothing more comes after it turns true
    more = list(llm.stream(long_history(0), lambda: True))
    assert more == []


def test_cancel_during_prompt_processing_aborts_llama_cpp(llm):
    cancel = threading.Event()
    timer = threading.Timer(0.2, cancel.set)
    aborts_before = llm.aborts
    t0 = time.perf_counter()
    timer.start()
    pieces = list(llm.stream(long_history(20), cancel.is_set))
    stopped_ms = (time.perf_counter() - t0 - 0.2) * 1000
    print(f"\ninterrupt_to_llm_stop during prompt processing: {stopped_ms:.0f} ms")
    assert pieces == [], "a cancel before the first token must yield nothing"
    assert llm.aborts > aborts_before, "the abort callback must be what stopped it"
    # the context is still usable afterwards
    answer = "".join(llm.stream(long_history(0)))
    assert "paris" in answer.lower()


def test_a_repeated_prefix_is_not_processed_again(llm):
    history = long_history(12)
    first = _time_to_first_token(llm, history)
    history = history + [{"role": "assistant", "content": "Paris."},
                         {"role": "user", "content": "And of Germany?"}]
    second = _time_to_first_token(llm, history)
    print(f"\ntime to first token with 12 turns of history: cold {first:.0f} ms, prefix reused {second:.0f} ms")
    assert second < first  # the work, not the clock: ~600 prompt tokens are skipped


def _time_to_first_token(llm, messages) -> float:
    t0 = time.perf_counter()
    for _ in llm.stream(messages):
        return (time.perf_counter() - t0) * 1000
    return float("inf")
