"""An answer's metrics and timeline: pure functions of what the conductor recorded of it.

Both are in milliseconds on the pipeline's clock. The metrics go into the turn
log's `metrics` column; the timeline feeds the simulator's waterfall plot.
"""

from __future__ import annotations

from sayso.pipeline.answer import Answer
from sayso.pipeline.messages import Kind, Reason


def _ms(a: int | None, b: int | None) -> float | None:
    return None if a is None or b is None else round((b - a) / 1e6, 3)


def timeline(turn: Answer) -> dict[str, float]:
    """An answer's milestones in ms on the pipeline's clock, for the waterfall plot."""
    stamps = {"speech_end": turn.speech_end_ns, "endpoint": turn.eos_ns, "final": turn.final_ns,
              "llm_asked": turn.started_ns, "first_token": turn.first_token_ns, "first_chunk": turn.first_chunk_ns,
              "first_audio": turn.first_audio_ns}
    return {f"{k}_ms": round(v / 1e6, 1) for k, v in stamps.items() if v is not None}


def turn_metrics(turn: Answer) -> dict:
    """An answer's metrics (ms on the pipeline's clock) from what the conductor saw of it."""
    first = turn.scope.first
    metrics: dict[str, object] = {"eos_to_first_token_ms": _ms(turn.eos_ns, turn.first_token_ns),
                                  "eos_to_first_audio_ms": _ms(turn.eos_ns, turn.first_audio_ns)}
    if turn.speech_end_ns is not None:
        metrics["speech_end_to_first_audio_ms"] = _ms(turn.speech_end_ns, turn.first_audio_ns)
        metrics["endpoint_ms"] = _ms(turn.speech_end_ns, turn.eos_ns)
        metrics["endpoint"] = turn.endpoint
        if turn.turn_probability is not None:
            metrics["turn_probability"] = round(turn.turn_probability, 3)
    if turn.preemptive:
        metrics["preemptive"] = "used"
    if turn.llm_busy_ms is not None and turn.gen_outcome == "timeout":
        metrics["llm_busy_ms"] = round(turn.llm_busy_ms, 1)
    if turn.underruns:
        metrics["underruns"] = turn.underruns
    if turn.backend:
        metrics["llm_backend"] = turn.backend.get("backend")
        if turn.backend.get("fell_back"):
            metrics["llm_fell_back"] = turn.backend["fell_back"]
    if turn.false_interruptions:
        metrics["false_interruptions"] = len(turn.false_interruptions)
        metrics["false_interruption_paused_ms"] = turn.false_interruptions
    if not turn.complete and first is not None:
        quiet_from, p = first.t_ns, turn.committed
        silence_ns = turn.silence_ns
        if p is not None and first.reason in (Reason.USER_SPEAKING, Reason.SUPERSEDED):
            # the person heard silence from the pause on: that is the interrupt's silence
            metrics["pause_to_commit_ms"] = _ms(p.requested_ns, first.t_ns)
            quiet_from, silence_ns = p.requested_ns, p.silence_ns or silence_ns
        if turn.first_audio_ns is not None:
            metrics["interrupt_to_silence_ms"] = max(0.0, _ms(quiet_from, silence_ns) or 0.0)
        if first.kind is Kind.FULL and turn.llm_stop_ns is not None and turn.llm_stop_ns >= first.t_ns:
            metrics["interrupt_to_llm_stop_ms"] = _ms(first.t_ns, turn.llm_stop_ns)
        if first.onset_ns is not None and silence_ns is not None and turn.first_audio_ns is not None:
            metrics["speech_onset_to_silence_ms"] = _ms(first.onset_ns, silence_ns)
    return {k: v for k, v in metrics.items() if v is not None}
