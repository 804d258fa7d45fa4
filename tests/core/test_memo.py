"""Caches of built objects: bounded, least recently used out first (never wholesale), kept
on the object they belong to (a spec's simulators die with the spec, copies and pickles
start without them); no cache is keyed by id()."""

from __future__ import annotations

import copy
import gc
import threading
import weakref

import cloudpickle
import numpy as np
import pytest

import cellpkpd as cp
from cellpkpd._core.memo import LRU, memo
from cellpkpd.engine.simulator import simulator_for


def test_lru_drops_the_least_recently_used_entry_only():
    cache: LRU[str, int] = LRU(2)
    cache["a"], cache["b"] = 1, 2
    assert cache.get("a") == 1  # now "b" is the least recently used
    cache["c"] = 3
    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)
    assert len(cache) == 2 and cache.get("b", -1) == -1 and cache["c"] == 3
    with pytest.raises(KeyError):
        cache["b"]
    cache.clear()
    assert len(cache) == 0


def test_lru_rejects_a_size_below_one():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="maxsize"):
            LRU(bad)


def test_lru_stays_bounded_under_threads():
    cache: LRU[int, int] = LRU(16)

    def fill(start: int) -> None:
        for i in range(start, start + 500):
            cache[i % 40] = i
            cache.get((i * 7) % 40)

    threads = [threading.Thread(target=fill, args=(k * 500,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 16


def test_memo_lives_on_a_frozen_object_and_wants_the_prefix():
    spec = cp.load_model("one_cmt_iv")
    first = memo(spec, "_memo_test", 3)
    assert memo(spec, "_memo_test", 3) is first
    assert "_memo_test" not in repr(spec) and spec == cp.load_model("one_cmt_iv")
    with pytest.raises(ValueError, match="must start with '_memo_'"):
        memo(spec, "cache", 3)


def test_a_specs_simulators_are_reused_bounded_and_die_with_it():
    spec = cp.load_model("one_cmt_iv")
    times = np.linspace(0.0, 24.0, 7)
    sim = simulator_for(spec, times)
    assert simulator_for(spec, times.copy()) is sim  # same content: the same Simulator
    assert simulator_for(spec, times, solver="tsit5") is not sim
    assert simulator_for(spec, times[:-1]) is not sim
    # an equal spec of its own gets its own simulators (nothing keyed by id(spec))
    assert simulator_for(cp.load_model("one_cmt_iv"), times) is not sim
    # a simulation through the cached Simulator still lets the spec go
    res = cp.simulate(spec, cp.Regimen([cp.Dose(0.0, 100.0, "central")]), times)
    assert np.all(np.isfinite(res["conc"].values))
    later = [simulator_for(spec, times + k) for k in range(1, 13)]  # more than it keeps
    assert len(spec._memo_simulators) == 8
    assert simulator_for(spec, times + 12) is later[-1]  # the newest stay
    assert simulator_for(spec, times) is not sim  # the oldest went: built again
    ref = weakref.ref(spec)
    del spec, sim, res, later
    gc.collect()
    assert ref() is None


def test_copies_and_pickles_of_a_spec_start_without_its_simulators():
    spec = cp.load_model("one_cmt_iv")
    simulator_for(spec, np.linspace(0.0, 24.0, 5))
    assert "_memo_simulators" in spec.__dict__
    for other in (copy.copy(spec), cloudpickle.loads(cloudpickle.dumps(spec))):
        assert "_memo_simulators" not in other.__dict__
        assert other == spec
