"""Typed stats (groupmates/stats.py) are the C++ structs field for field, still read like dicts,
and feed the metrics callback of on_step()."""
import copy
import dataclasses

import numpy as np
import pytest

import groupmates
from groupmates import _core


def names(cls):
    return {name for name, _kind in cls._fields}


@pytest.mark.parametrize("py_cls, cpp_cls, extra", [
    (groupmates.SelectionStats, _core.SelectionStats, set()),
    (groupmates.ProbeStats, _core.ProbeStats, set()),
    (groupmates.SelectionCost, _core.SelectionCost, set()),
    (groupmates.VersionSwitch, _core.VersionSwitch, set()),
    (groupmates.LoaderStats, _core.LoaderStats, {"skip_report", "skipped", "config_fingerprint", "pinned_buffers",
                                                  "pin_failures", "pin_last_error"}),
])
def test_stats_classes_have_the_fields_of_the_cpp_structs(py_cls, cpp_cls, extra):
    assert {f.name for f in dataclasses.fields(py_cls)} == names(cpp_cls) | extra
    with pytest.warns(UserWarning, match=r"fields \['no_such_field'\] of the C\+\+ struct are not in"):
        assert py_cls.from_dict({"no_such_field": 1}) == py_cls()


def test_stats_read_like_dicts_and_flatten_to_metrics():
    s = groupmates.SelectionStats.from_dict({
        "windows": 4, "seen": 100, "selected": 40, "seen_per_cluster": [60, 40, 0], "selected_per_cluster": [30, 10, 0],
        "probes": {"probes_completed": 2, "probe_share": 0.1, "last_error": ""},
        "cost": {"train_flops": 200.0, "probe_flops": 50.0, "wait_probe_seconds": 0.5},
        "switches": [{"window": 1, "probe_step": 10, "version": 2}]})
    assert s["probes"]["probes_completed"] == 2 and s.probes.probes_completed == 2
    assert isinstance(s.switches[0], groupmates.VersionSwitch) and s.switches[0]["version"] == 2
    assert set(s) == {f.name for f in dataclasses.fields(s)} and dict(s)["seen"] == 100
    assert s.as_dict()["cost"]["probe_flops"] == 50.0
    assert s.selected_share_per_cluster == [0.5, 0.25, 0.0]
    m = s.metrics()
    assert m["selection/selected_share"] == 0.4 and m["selection/probe_flops_share"] == 0.25
    assert m["selection/cluster_1/selected_share"] == 0.25 and m["selection/trainer_wait_seconds"] == 0.5
    assert all(isinstance(v, float) for v in m.values())


def test_metrics_callback_runs_every_n_steps_on_the_plain_loader(token_file):
    loader = groupmates.GroupMatesLoader(sources=[token_file], sequence_length=16, batch_size=4, seed=1)
    seen = []
    loader.add_metrics_callback(lambda step, m: seen.append((step, m)), every=3)
    for step, _batch in zip(range(10), loader):
        loader.on_step(step)
    assert [step for step, _ in seen] == [0, 3, 6, 9]
    assert [m["loader/batches"] for _, m in seen] == [1.0, 4.0, 7.0, 10.0]
    assert seen[-1][1] == loader.metrics() and "selection/selected_share" not in seen[-1][1]
    copy.deepcopy(loader)  # the callbacks (a lambda) stay behind
    with pytest.raises(groupmates.ConfigError, match="add_metrics_callback.every"):
        loader.add_metrics_callback(print, every=0)
    with pytest.raises(groupmates.ConfigError, match="add_metrics_callback.fn"):
        loader.add_metrics_callback("print")
    s = loader.selection_stats()
    assert isinstance(s, groupmates.SelectionStats) and s.seen == s.selected == 40
    assert isinstance(loader.stats(), groupmates.LoaderStats) and loader.stats().skipped == {}


def test_metrics_callback_reports_selection(token_file):
    if not groupmates.engine_available():
        pytest.skip(f"groupmates._engine did not import: {groupmates.engine_error()}")
    loader = groupmates.GroupMatesLoader(sources=[token_file], sequence_length=16, batch_size=4, seed=1,
                                         selection={"mode": "random", "window_size": 16, "ratio": 0.5})
    seen = []
    loader.add_metrics_callback(lambda step, m: seen.append(m), every=5)
    for step, _batch in zip(range(10), loader):
        loader.on_step(step)
    s = loader.selection_stats()
    assert s.selected == 40 and s.seen >= 80 and s.windows >= 5
    assert len(seen) == 2  # steps 0 and 5
    m = seen[-1]  # after 6 batches of 4 rows: windows of 16 read, half of each emitted
    assert m["selection/selected"] == 24.0 and m["selection/seen"] == 48.0 and m["selection/selected_share"] == 0.5
    assert m["selection/windows"] == 3.0 and m["loader/batches"] in (3.0, 4.0)  # windows read (+ one ahead)
    assert sum(v for k, v in m.items() if k.endswith("/selected_share") and "cluster_" in k) > 0
    assert loader.metrics()["selection/selected"] == float(s.selected) == 40.0
    assert np.isfinite(list(m.values())).all()
    loader.close()
