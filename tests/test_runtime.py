"""engine.runtime: every Kefu process collects cyclic garbage less often than Python's default (a workflow step
allocates tens of thousands of objects), without lowering a threshold someone set higher."""
import gc

from engine import Config, Kefu
from engine.runtime import GEN0_THRESHOLD, tune_collector


def test_a_kefu_process_raises_the_collectors_first_threshold_and_keeps_a_higher_one():
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        Kefu(Config(database_url="sqlite://", env="test"))
        assert gc.get_threshold() == (GEN0_THRESHOLD, 10, 10)
        gc.set_threshold(GEN0_THRESHOLD * 2, 10, 10)
        tune_collector()
        assert gc.get_threshold()[0] == GEN0_THRESHOLD * 2
    finally:
        gc.set_threshold(*saved)
