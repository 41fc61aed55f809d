"""The real LLM (llama.cpp): cancel within one token, and during prompt processing."""

import threading

import pytest

from sayso.answering.llm import LlamaLLM
from sayso.config import LLMSettings

pytestmark = pytest.mark.slow


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
    for piece in llm.stream(long_history(0), cancel.is_set):
        pieces.append(piece)
        if len(pieces) == 3:
            setter = threading.Thread(target=cancel.set)  # from another thread, as the conductor's interrupt
            setter.start()
            setter.join()
    assert len(pieces) == 3, "nothing may come after the cancel"
    # the stream itself honours should_stop: nothing more comes after it turns true
    more = list(llm.stream(long_history(0), lambda: True))
    assert more == []


def test_cancel_during_prompt_processing_aborts_llama_cpp(llm):
    processing, cancel = threading.Event(), threading.Event()

    def should_stop() -> bool:
        processing.set()  # before the first token only the abort watcher asks
        return cancel.is_set()

    def interrupt() -> None:
        if processing.wait(60):
            cancel.set()

    aborts_before = llm.aborts
    threading.Thread(target=interrupt, daemon=True).start()
    pieces = list(llm.stream(long_history(20), should_stop))
    assert processing.is_set() and cancel.is_set()
    assert pieces == [], "a cancel before the first token must yield nothing"
    assert llm.aborts > aborts_before, "llama.cpp must have been stopped inside its decode"
    # the context is still usable afterwards
    answer = "".join(llm.stream(long_history(0)))
    assert "paris" in answer.lower()


def test_a_stop_that_is_called_off_after_the_abort_is_still_a_clean_cancel(llm):
    # the request a prefill gave way to can be gone by the time llama.cpp returns (flushed by an
    # interrupt): the stop it asked for is still the one that ended the decode, not a failure
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) == 1  # true for the abort watcher's first look, false ever after

    aborts_before = llm.aborts
    llm.prefill(long_history(20), should_stop)
    assert llm.aborts == aborts_before + 1, "llama.cpp must have been stopped inside its decode"


@pytest.fixture
def evaluated(llm, monkeypatch) -> list[int]:
    """The sizes of the token batches llama.cpp evaluates, as they come."""
    sizes: list[int] = []
    real_eval = llm._llama.eval

    def counting_eval(tokens):
        sizes.append(len(tokens))
        return real_eval(tokens)

    monkeypatch.setattr(llm._llama, "eval", counting_eval)
    return sizes


def test_a_repeated_prefix_is_not_processed_again(llm, evaluated):
    history = long_history(12)
    cold = _prompt_tokens_evaluated(llm, history, evaluated)
    history = history + [{"role": "assistant", "content": "Paris."},
                         {"role": "user", "content": "And of Germany?"}]
    warm = _prompt_tokens_evaluated(llm, history, evaluated)
    assert cold > 500, "12 turns of history are some 600 prompt tokens"
    assert warm < 50, f"the shared prefix was evaluated again: {warm} of {cold} tokens"


def test_a_prefill_while_idle_leaves_only_the_new_question_to_evaluate(llm, evaluated):
    _prompt_tokens_evaluated(llm, long_history(0), evaluated)  # the cache holds another conversation
    history = long_history(12)[:-1]  # the conversation so far, ending with an answer
    llm.prefill(history)
    prefilled = sum(evaluated)
    asked = _prompt_tokens_evaluated(llm, history + [{"role": "user", "content": "And of Germany?"}], evaluated)
    assert prefilled > 500 and asked < 50, (prefilled, asked)


def test_a_prefill_of_the_words_so_far_leaves_only_the_last_words_and_the_reply_to_begin(llm, evaluated):
    history = long_history(6)[:-1]
    cold = _prompt_tokens_evaluated(llm, long_history(0), evaluated)  # the cache holds another conversation
    llm.prefill(history + [{"role": "user", "content": "What is the capital"}])
    asked = _prompt_tokens_evaluated(llm, history + [{"role": "user", "content": "What is the capital of France?"}],
                                     evaluated)
    assert cold > 10 and asked < 12, (cold, asked)
    llm.prefill(history + [{"role": "user", "content": "And of Germany?"}])
    asked = _prompt_tokens_evaluated(llm, history + [{"role": "user", "content": "And of Germany?"}], evaluated)
    assert asked <= 1, f"the very words prefilled were evaluated again: {asked} tokens"


def test_an_answer_stopped_part_way_goes_on_from_its_words(llm, evaluated):
    messages = long_history(4)
    pieces: list[str] = []
    for piece in llm.stream(messages, lambda: len(pieces) >= 6):
        pieces.append(piece)
    so_far = "".join(pieces)
    assert llm.resumable and len(pieces) == 6
    evaluated.clear()
    rest = "".join(llm.resume(messages, so_far))
    assert evaluated[0] <= 2, f"the prompt and the words so far were evaluated again: {evaluated[0]} tokens"
    assert rest.strip() and "<|im" not in rest, rest
    # after a prefill of the prompt that would follow a cut-in, only the answer's own words are new again
    llm.prefill([*messages, {"role": "assistant", "content": so_far.strip()},
                 {"role": "system", "content": "The person cut in there."}, {"role": "user", "content": "Wait"}])
    evaluated.clear()
    for _ in llm.resume(messages, so_far):
        break
    assert evaluated[0] <= len(pieces) + 2, evaluated


def _prompt_tokens_evaluated(llm, messages, evaluated: list[int]) -> int:
    """How many prompt tokens llama.cpp evaluated before the first piece of the answer."""
    evaluated.clear()
    for _ in llm.stream(messages):
        break
    return evaluated[0]


def test_the_weights_are_read_into_memory_not_mapped_from_the_file(llm):
    """A mapped file would stay resident beside llama.cpp's repacked copy of its weights."""
    with open("/proc/self/maps") as maps:
        mapped = [line for line in maps if line.rstrip().endswith(llm.model_path.name)]
    assert mapped == []
