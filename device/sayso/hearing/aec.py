"""Acoustic echo cancellation with libspeexdsp, through a small ctypes binding.

Debian and Raspberry Pi OS ship `libspeexdsp1` (the MDF echo canceller and its
residual-echo suppressor), so this needs no wheel and no compiler: a handful of
C functions, bound here. The canceller learns the path from what the speaker
played (the reference, at the mic's 16 kHz) to the mic, and subtracts it.
echo.py runs it before the VAD, with the reference laid on the audio clock and
the delay measured. Why Speex and not WebRTC's AEC3, and what it costs:
docs/echo-cancelling.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache

import numpy as np

from sayso.errors import SaysoError

# speex_echo.h / speex_preprocess.h request codes (stable since speexdsp 1.2)
_ECHO_SET_SAMPLING_RATE = 24
_PREPROCESS_SET_DENOISE = 0
_PREPROCESS_SET_ECHO_STATE = 24


class EchoCancellerUnavailable(SaysoError, OSError):
    """libspeexdsp is not installed."""


@lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("speexdsp") or "libspeexdsp.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        raise EchoCancellerUnavailable(
            "libspeexdsp is not installed: `sudo apt install libspeexdsp1` (`make setup` does it)") from None
    vp, i16p, c_int = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int16), ctypes.c_int
    for fn, res, args in (
        ("speex_echo_state_init", vp, [c_int, c_int]),
        ("speex_echo_state_destroy", None, [vp]),
        ("speex_echo_state_reset", None, [vp]),
        ("speex_echo_cancellation", None, [vp, i16p, i16p, i16p]),
        ("speex_echo_ctl", c_int, [vp, c_int, vp]),
        ("speex_preprocess_state_init", vp, [c_int, c_int]),
        ("speex_preprocess_state_destroy", None, [vp]),
        ("speex_preprocess_run", c_int, [vp, i16p]),
        ("speex_preprocess_ctl", c_int, [vp, c_int, vp]),
    ):
        f = getattr(lib, fn)
        f.restype, f.argtypes = res, args
    return lib


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_int16))


class SpeexAEC:
    """One echo canceller for mono 16 kHz int16 frames, with Speex's residual-echo suppressor after it.

    Args:
        frame: samples per call (512 = the pipeline's 32 ms frame).
        tail_ms: how much echo it models; it must cover the delay from writing to the
            speaker to hearing it in the mic, plus the room's reverberation.
        suppress: also run Speex's residual-echo suppressor. Off by default: it delays its
            output by one frame (32 ms), which barge-in would pay, and on the simulator's
            echo it removed no more.
    """

    def __init__(self, rate_hz: int = 16000, frame: int = 512, tail_ms: float = 256.0, suppress: bool = False):
        self._lib = lib = _lib()
        self.frame = frame
        self._echo = lib.speex_echo_state_init(frame, int(rate_hz * tail_ms / 1000))
        rate = ctypes.c_int(rate_hz)
        lib.speex_echo_ctl(self._echo, _ECHO_SET_SAMPLING_RATE, ctypes.byref(rate))
        self._pre = None
        if suppress:
            self._pre = lib.speex_preprocess_state_init(frame, rate_hz)
            off = ctypes.c_int(0)  # echo suppression only: the VAD wants the room's noise as it is
            lib.speex_preprocess_ctl(self._pre, _PREPROCESS_SET_DENOISE, ctypes.byref(off))
            lib.speex_preprocess_ctl(self._pre, _PREPROCESS_SET_ECHO_STATE, ctypes.c_void_p(self._echo))
        self._out = np.zeros(frame, np.int16)

    def process(self, mic: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """The mic frame with the echo of `reference` (what played, aligned to it) taken out."""
        mic = np.ascontiguousarray(mic, np.int16)
        ref = np.ascontiguousarray(reference, np.int16)
        if len(mic) != self.frame or len(ref) != self.frame:
            raise ValueError(f"frames of {self.frame} samples, not {len(mic)} and {len(ref)}")
        out = np.empty(self.frame, np.int16)
        self._lib.speex_echo_cancellation(self._echo, _ptr(mic), _ptr(ref), _ptr(out))
        if self._pre is not None:
            self._lib.speex_preprocess_run(self._pre, _ptr(out))
        return out

    def reset(self) -> None:
        self._lib.speex_echo_state_reset(self._echo)

    def close(self) -> None:
        if self._pre is not None:
            self._lib.speex_preprocess_state_destroy(self._pre)
            self._pre = None
        if self._echo is not None:
            self._lib.speex_echo_state_destroy(self._echo)
            self._echo = None

    def __del__(self) -> None:
        self.close()
