"""A fetched ONNX model opened on onnxruntime's CPU provider, with a one-line error when it is missing or damaged."""

from __future__ import annotations

from pathlib import Path

from sayso.errors import ModelCorrupt, ModelMissing


def cpu_session(model_path: str | Path, what: str, threads: int = 1, spinning: bool = True):
    """An InferenceSession on `threads` intra-op threads; `what` names the model in the error.

    `spinning=False` stops idle worker threads from busy-waiting: for a model run now and
    then on a board whose other core belongs to the LLM.
    """
    import onnxruntime as ort

    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelMissing(f"{what} {model_path} is missing; run `sayso models fetch`.")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf for a damaged file
        raise ModelCorrupt(f"{what} {model_path} is damaged ({type(e).__name__}); "
                           "run `sayso models fetch`.") from None
