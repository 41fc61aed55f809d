"""One spoken exchange on the real models, with no sound card: the first `make demo`.

A question is spoken by Piper, resampled to the mic rate with soxr, transcribed
by the streaming recogniser, answered by the LLM and spoken into a WAV file.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from sayso.answering.llm import LlamaLLM
from sayso.answering.tts import PiperTTS
from sayso.audio import FRAME_SAMPLES, RATE_HZ, to_mic_rate, write_wav
from sayso.config import Settings
from sayso.hearing.stt import open_recognizer
from sayso.models.manifest import ModelStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExchangeResult:
    question: str
    heard: str
    answer: str
    recogniser: str
    question_wav: Path
    answer_wav: Path
    stt_rtf: float
    """Recognition time over audio duration."""
    eos_to_first_token_ms: float
    tokens_per_s: float


def run_exchange(settings: Settings, store: ModelStore, question: str, out_dir: Path,
                 repeatable: bool = False) -> ExchangeResult:
    """`repeatable`: the question is spoken without Piper's sampling noise, the same audio every time (tests:
    one rendering in many lost "France" to pocketsphinx)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tts = PiperTTS(store.path(settings.voice.model, role="voice"), settings.voice.length_scale, repeatable)
    q_audio = tts.audio(question)
    q_wav = out_dir / "question.wav"
    write_wav(q_wav, q_audio, tts.rate_hz)

    rec = open_recognizer(store, settings.stt.engine, settings.stt.vosk_model)
    mic = to_mic_rate(q_audio, tts.rate_hz)
    t0 = time.perf_counter()
    for i in range(0, len(mic), FRAME_SAMPLES):
        partial = rec.accept(mic[i:i + FRAME_SAMPLES].tobytes())
        if partial:
            log.debug("partial: %s", partial.text)
    final = rec.end()
    stt_rtf = (time.perf_counter() - t0) / (len(mic) / RATE_HZ)

    llm = LlamaLLM.from_settings(store.path(settings.llm.model, role="llm"), settings.llm)
    messages = [{"role": "system", "content": settings.llm.system_prompt},
                {"role": "user", "content": final.text or question}]
    t_eos = time.perf_counter()
    pieces, t_first = [], None
    for piece in llm.stream(messages):
        if t_first is None:
            t_first = time.perf_counter()
        pieces.append(piece)
    t_end = time.perf_counter()
    answer = "".join(pieces).strip()
    a_audio = tts.audio(answer)
    a_wav = out_dir / "answer.wav"
    write_wav(a_wav, a_audio, tts.rate_hz)
    ttft = ((t_first or t_end) - t_eos) * 1000
    tps = (len(pieces) - 1) / (t_end - t_first) if t_first and len(pieces) > 1 and t_end > t_first else 0.0
    return ExchangeResult(question, final.text, answer, rec.name, q_wav, a_wav, stt_rtf, ttft, tps)
