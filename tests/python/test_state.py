"""Checkpointing: state_dict()/load_state_dict() resume the exact stream; skip(n); elastic restore."""
import io
import random

import pytest
import torch

import groupmates

T, B = 64, 4


def make(token_file, **kw):
    args = dict(sources=[token_file], sequence_length=T, batch_size=B, seed=11, epochs=2)
    args.update(kw)
    return groupmates.GroupMatesLoader(**args)


def stream(loader, n=None):
    out = []
    for b in loader:
        out.append((b["index"], b["input_ids"].clone(), b["ids"].clone()))
        if n is not None and len(out) == n:
            break
    return out


def assert_same(a, b):
    assert len(a) == len(b)
    for (ia, xa, ha), (ib, xb, hb) in zip(a, b):
        assert ia == ib and torch.equal(xa, xb) and torch.equal(ha, hb)


@pytest.fixture(scope="module")
def reference(token_file):
    return stream(make(token_file))  # two shuffled epochs, 780 batches


def roundtrip(state):
    buf = io.BytesIO()
    torch.save({"data": state}, buf)  # next to the model's state, as a trainer would
    buf.seek(0)
    return torch.load(buf)["data"]


@pytest.mark.parametrize("seed", [1, 2])
def test_resume_at_random_points_twice(token_file, reference, seed):
    rng = random.Random(seed)
    k1 = rng.randrange(1, len(reference) - 2)
    k2 = rng.randrange(k1 + 1, len(reference))
    first = make(token_file)
    got = stream(first, k1)
    state = roundtrip(first.state_dict())
    first.close()
    assert state["batches"] == k1
    second = make(token_file, state=state)          # resume once ...
    got += stream(second, k2 - k1)
    third = make(token_file)
    third.load_state_dict(roundtrip(second.state_dict()))  # ... and again
    got += stream(third)
    assert_same(got, reference)


def test_resume_elastic_world_size(token_file, reference):
    # Saved by 2 ranks of batch 4 (global 8), restored on 1 rank of batch 8: same global stream.
    r0 = make(token_file, world_size=2, rank=0)
    stream(r0, 10)
    one = make(token_file, batch_size=8, state=r0.state_dict())
    b = next(one)
    assert b["index"] == 10
    two_ranks = [make(token_file, world_size=2, rank=r) for r in range(2)]
    for r in two_ranks:
        stream(r, 10)
    want = torch.cat([next(r)["input_ids"] for r in two_ranks])
    assert torch.equal(b["input_ids"], want)


def test_skip_jumps_and_is_recorded(token_file, reference):
    loader = make(token_file)
    stream(loader, 5)
    assert loader.skip(7) == 7
    assert_same(stream(loader, 3), reference[12:15])
    sd = loader.state_dict()
    assert sd["batches"] == 15
    assert sd["skips"] == [{"at_batch": 5, "requested": 7, "skipped": 7}]
    resumed = make(token_file, state=sd)
    assert resumed.state_dict()["skips"] == sd["skips"]
    assert_same(stream(resumed, 4), reference[15:19])
    assert loader.skip(10_000) == len(reference) - 15  # stops at the end of the stream
    assert list(loader) == []


def test_break_stops_workers_and_iteration_continues(token_file, reference):
    loader = make(token_file)
    got = stream(loader, 3)            # break inside stream()
    assert loader._core is None        # the workers were stopped and joined
    got += stream(loader, 4)           # a new loop restarts exactly there
    got.append((lambda b: (b["index"], b["input_ids"].clone(), b["ids"].clone()))(next(loader)))
    assert_same(got, reference[:8])


def test_state_is_text_and_restores_from_text(token_file, reference):
    loader = make(token_file)
    stream(loader, 4)
    text = loader.state_dict()["state"]
    assert text.startswith("groupmates-state 2\n")
    assert_same(stream(make(token_file, state=text), 2), reference[4:6])


def test_state_of_another_config_is_rejected(token_file):
    loader = make(token_file)
    stream(loader, 2)
    with pytest.raises(groupmates.StateError) as e:
        make(token_file, seed=12, state=loader.state_dict())
    assert isinstance(e.value, ValueError) and e.value.code == "invalid_state"
    assert "same config" in str(e.value)
    with pytest.raises(groupmates.StateError, match="LoaderState"):
        make(token_file, state={"state": "not a state"})
    with pytest.raises(groupmates.StateError):
        make(token_file, state={"format": "other", "version": 1, "state": ""})
