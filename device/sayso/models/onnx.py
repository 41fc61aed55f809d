"""A fetched ONNX model opened on onnxruntime's CPU provider, with a one-line error when it is missing or damaged."""

from __future__ import annotations

import functools
from pathlib import Path

from sayso.errors import ModelCorrupt, ModelMissing


@functools.cache
def _share_cpu_arena() -> None:
    """Register one CPU memory arena for the process, which every session below allocates from.

    Each session otherwise grows an arena of its own to its largest run and keeps
    it: Silero, Smart Turn and Piper then hold three peaks at once, where one arena
    serves them all from memory that the others freed (22 MB less here).
    """
    import onnxruntime as ort

    cpu = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(cpu, ort.OrtArenaCfg(0, -1, -1, -1))  # onnxruntime's defaults


def session_options(threads: int | None = None, spinning: bool = True):
    """SessionOptions on the process's shared CPU arena; `threads` intra-op threads (None: onnxruntime's choice)."""
    import onnxruntime as ort

    _share_cpu_arena()
    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.use_env_allocators", "1")
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def cpu_session(model_path: str | Path, what: str, threads: int = 1, spinning: bool = True):
    """An InferenceSession on `threads` intra-op threads; `what` names the model in the error.

    `spinning=False` stops idle worker threads from busy-waiting: for a model run now and
    then on a board whose other core belongs to the LLM.
    """
    import onnxruntime as ort

    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelMissing(f"{what} {model_path} is missing; run `sayso models fetch`.")
    opts = session_options(threads, spinning)
    try:
        return ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf for a damaged file
        raise ModelCorrupt(f"{what} {model_path} is damaged ({type(e).__name__}); "
                           "run `sayso models fetch`.") from None
