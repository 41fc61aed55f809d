"""Crash-harness child: runs the engine on fakes until SIGKILLed.

Prints READY once started and `ACK <id>` for every user turn after it is
committed, so the parent knows which turns the log promised to keep.
"""

import random
import sys
import time

from sayso.engine import Engine
from sayso.pipeline.messages import SpeechStarted, Utterance
from sayso.pipeline.turnlog import TurnLog
from sayso.sim.fakes import FakeLLM, FakeSpeakerSink, FakeTTS
from waits import lasts


def main(db: str, seed: int) -> None:
    rng = random.Random(seed)

    def ack(event):
        # acknowledged = on disk: a turn waiting in memory (an unwritable log) is not promised yet
        if event.type == "user_turn" and turnlog.writable:
            print(f"ACK {event.data['turn']}", flush=True)

    answers = ["Sure, here is a short answer. It has a second sentence too, and a third one after it.",
               "Yes. That is right, and there is more to say about it later on."]
    turnlog = TurnLog(db)
    engine = Engine(llm=FakeLLM(answers, token_delay_s=0.004, first_token_delay_s=0.01),
                    tts=FakeTTS(ms_per_char=6.0, gap_ms=5.0), sink=FakeSpeakerSink(), turnlog=turnlog,
                    observers=[ack]).start()
    print("READY", flush=True)
    n = 0
    while True:
        n += 1
        engine.conductor.post(SpeechStarted(time.monotonic_ns()))
        engine.conductor.post(Utterance(f"question {seed}-{n}", time.monotonic_ns()))
        lasts(rng.uniform(0.0, 0.25))  # the person's next move comes at a random moment
        roll = rng.random()
        if roll < 0.3:
            engine.conductor.button()
        elif roll < 0.45:
            engine.conductor.interrupt("speech", "user_speaking")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
