"""Process-wide settings of the Python runtime that every Kefu process (server, scheduler, firing helpers,
CLI, tests) shares.

The cyclic garbage collector: restoring and running a workflow allocates tens of thousands of objects (tasks,
their data, the serializer's dictionaries), so with Python's default first-generation threshold (700
allocations) a collection ran several times per step, each walking the young objects of the workflows at
hand; measured on a storm of timer firings, collections took about a sixth of the CPU. The first generation
is collected after 50,000 allocations here; the older generations keep their default ratios, so cyclic
garbage (a workflow dropped from the warm instances) is still freed within a few thousand steps.
"""
from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000


def tune_collector() -> None:
    """Raise the collector's first threshold to ``GEN0_THRESHOLD`` (a higher one set already is kept)."""
    gen0, gen1, gen2 = gc.get_threshold()
    if 0 < gen0 < GEN0_THRESHOLD:
        gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
