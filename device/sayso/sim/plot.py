"""Waterfall plots of a simulated run: where each answer's time went, over the mic and the speaker.

For people who would rather look than read the report: one row per answer,
from the end of the person's words to the answer's first sound, and under it
the run's mic and speaker tracks on the same audio clock. matplotlib is an
optional extra (`pip install 'sayso[plot]'`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sayso.audio import RATE_HZ
from sayso.errors import SaysoError

MILESTONES = (("speech_end", "end of speech"), ("endpoint", "turn over"), ("final", "final transcript"),
              ("llm_asked", "LLM asked"), ("first_token", "first token"), ("first_chunk", "first chunk"),
              ("first_audio", "first audio"))
"""The answer_timeline event's stamps, in the order a turn goes through them."""


def waterfall(report: dict, path: Path, tracks: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Draw `report` (a simulation's report JSON) to a PNG at `path`; return the path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SaysoError("plots need matplotlib: pip install 'sayso[plot]' (or pip install matplotlib)") from None
    answers = [e for e in report["events"] if e["type"] == "answer_timeline" and "speech_end_ms" in e]
    rows = 1 + (2 if tracks is not None else 0)
    fig, axes = plt.subplots(rows, 1, figsize=(12, 2.2 + 1.6 * rows + 0.35 * len(answers)), squeeze=False,
                             gridspec_kw={"height_ratios": [max(2, len(answers)), *[1.5] * (rows - 1)]})
    ax = axes[0][0]
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(MILESTONES)))
    for y, a in enumerate(answers):
        start = a["speech_end_ms"]
        ax.barh(y, a.get("first_audio_ms", start) - start, left=0, color="#dddddd", height=0.6)
        for (key, label), colour in zip(MILESTONES, colours, strict=True):
            if f"{key}_ms" in a:
                ax.plot(a[f"{key}_ms"] - start, y, "o", color=colour, label=label if y == 0 else None)
        if "first_audio_ms" in a:
            ax.annotate(f"{a['first_audio_ms'] - start:.0f} ms", (a["first_audio_ms"] - start, y),
                        xytext=(6, -3), textcoords="offset points", fontsize=8)
    ax.set_yticks(range(len(answers)), [f"answer {a['turn']}" for a in answers])
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("ms from the end of the person's words (audio clock)")
    ax.set_title(f"{report['scenario']}: where each answer's time went")
    if answers:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    if tracks is not None:
        for ax, track, name in ((axes[1][0], tracks[0], "mic"), (axes[2][0], tracks[1], "speaker")):
            t, low, high = _envelope(track)
            ax.fill_between(t, low, high, linewidth=0, color="#336699" if name == "mic" else "#aa5522")
            for a in answers:
                for key in ("speech_end", "first_audio"):
                    if f"{key}_ms" in a:
                        ax.axvline(a[f"{key}_ms"] / 1000, color="black" if key == "speech_end" else "green",
                                   linewidth=0.6, linestyle="--")
            ax.set_ylabel(name)
            ax.set_ylim(-1, 1)
        axes[2][0].set_xlabel("s on the audio clock (dashed: end of speech in black, first audio in green)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _envelope(track: np.ndarray, step: int = RATE_HZ // 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seconds, minimum and maximum of every 10 ms, full scale 1: a minute of audio is 6,000 points, not 960,000."""
    n = len(track) // step * step
    blocks = track[:n].reshape(-1, step) / 32768.0
    return np.arange(len(blocks)) * step / RATE_HZ, blocks.min(axis=1), blocks.max(axis=1)
