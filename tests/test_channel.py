import threading

import pytest

from sayso.errors import ChannelClosed
from sayso.pipeline.channel import Channel, of_turn
from sayso.pipeline.messages import Cancel, Clause


def test_control_overtakes_queued_data():
    ch = Channel("t", capacity=4)
    ch.put(Clause(1, 0, "a"))
    ch.put(Clause(1, 1, "b"))
    ch.put_control(Cancel(1))
    assert [ch.get(0), ch.get(0), ch.get(0)] == [Cancel(1), Clause(1, 0, "a"), Clause(1, 1, "b")]
    assert ch.get(timeout=0.01) is None


def test_flush_drops_only_the_cancelled_turn():
    ch = Channel("t")
    for item in (Clause(1, 0, "a"), Clause(2, 0, "x"), Clause(1, 1, "b")):
        ch.put(item)
    assert ch.flush(of_turn(1)) == 2
    assert ch.get(0) == Clause(2, 0, "x") and len(ch) == 0


def test_holds_sees_queued_data_and_control_until_taken():
    ch = Channel("t")
    ch.put(Clause(1, 0, "a"))
    ch.put_control(Cancel(2))
    assert ch.holds(lambda x: isinstance(x, Clause)) and ch.holds(lambda x: isinstance(x, Cancel))
    assert not ch.holds(of_turn(3))
    ch.get(0)
    assert not ch.holds(lambda x: isinstance(x, Cancel)) and ch.holds(of_turn(1))


def test_close_wakes_a_blocked_get_and_a_blocked_put():
    empty, full = Channel("empty"), Channel("full", capacity=1)
    full.put("x")
    woken = []

    def wait_on(name, fn):
        try:
            fn()
        except ChannelClosed:
            woken.append(name)

    threads = [threading.Thread(target=wait_on, args=("get", lambda: empty.get(timeout=30))),
               threading.Thread(target=wait_on, args=("put", lambda: full.put("y", timeout=30)))]
    for t in threads:
        t.start()
    empty.close()
    full.close()
    for t in threads:
        t.join(5)
    assert sorted(woken) == ["get", "put"]
    with pytest.raises(ChannelClosed):
        full.put_control("late")


def test_a_full_channel_applies_back_pressure_until_flushed():
    ch = Channel("t", capacity=2)
    ch.put(Clause(7, 0, "a"))
    ch.put(Clause(7, 1, "b"))
    with pytest.raises(TimeoutError):
        ch.put(Clause(7, 2, "c"), timeout=0.05)
    done = threading.Event()
    t = threading.Thread(target=lambda: (ch.put(Clause(8, 0, "next")), done.set()))
    t.start()
    assert not done.wait(0.05)
    ch.flush(of_turn(7))
    assert done.wait(5)
    assert ch.get(0) == Clause(8, 0, "next")


def test_take_picks_the_first_matching_item_and_leaves_the_rest_in_order():
    ch = Channel("t")
    for i, text in enumerate(["a", "b", "c"]):
        ch.put(Clause(7 if text != "b" else 8, i, text))
    assert ch.take(of_turn(9), timeout=0.01) is None
    assert ch.take(of_turn(8), timeout=0.01) == Clause(8, 1, "b")
    assert [ch.get(0), ch.get(0)] == [Clause(7, 0, "a"), Clause(7, 2, "c")]
    later = threading.Timer(0.05, lambda: ch.put(Clause(8, 3, "d")))
    later.start()
    assert ch.take(of_turn(8), timeout=5) == Clause(8, 3, "d")
    ch.close()
    with pytest.raises(ChannelClosed):
        ch.take(of_turn(8), timeout=0.01)
