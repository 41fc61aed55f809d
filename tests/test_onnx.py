"""Every onnxruntime session of the appliance allocates from the one arena of the process."""

from sayso.models.onnx import session_options


def test_sessions_ask_for_the_shared_arena_with_their_threads():
    opts = session_options(1, spinning=False)
    assert opts.get_session_config_entry("session.use_env_allocators") == "1"
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    again = session_options()  # the arena is registered once; later sessions join it
    assert again.get_session_config_entry("session.use_env_allocators") == "1"
    assert again.intra_op_num_threads == 0, "None leaves the thread count to onnxruntime"
