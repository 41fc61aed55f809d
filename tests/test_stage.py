import threading

import pytest

from sayso.errors import StageError
from sayso.pipeline.stage import Stage, stop_all


def test_stop_names_a_stage_that_will_not_stop():
    gate = threading.Event()

    class Stuck(Stage):
        name = "stuck"

        def step(self):
            gate.wait(30)  # ignores its stop event: the bug this guards against

    class Polite(Stage):
        name = "polite"

        def step(self):
            self.stopping.wait(0.01)

    stuck, polite = Stuck(), Polite()
    stuck.start()
    polite.start()
    with pytest.raises(StageError, match="'stuck'|stuck did not stop"):
        stop_all([stuck, polite], timeout_s=0.3)
    assert not polite.alive
    gate.set()
    stuck.join(5)


def test_an_exception_is_reported_with_the_stage_name_and_the_loop_goes_on(caplog):
    failures, steps = [], []
    done = threading.Event()

    class Flaky(Stage):
        name = "flaky"

        def step(self):
            steps.append(1)
            self.current_turn = 7
            if len(steps) == 1:
                raise ValueError("bad item")
            done.set()
            self.stopping.wait(0.01)

    s = Flaky(on_error=lambda stage, turn, exc: failures.append((stage, turn, str(exc))))
    s.start()
    assert done.wait(5)
    stop_all([s], 5)
    assert failures == [("flaky", 7, "bad item")]
    assert "stage flaky failed on turn 7" in caplog.text
