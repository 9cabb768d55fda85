"""GroupMatesLoader inside torch.utils.data.DataLoader(batch_size=None), pickling, on_step."""
import copy
import pickle

import pytest
import torch

import groupmates

T, B = 64, 4


def make(token_file, **kw):
    args = dict(sources=[token_file], sequence_length=T, batch_size=B, seed=5)
    args.update(kw)
    return groupmates.GroupMatesLoader(**args)


def indices_and_tokens(batches):
    return [(b["index"], b["input_ids"].clone()) for b in batches]


def test_dataloader_in_process_equals_the_stream_and_tracks_state(token_file):
    ref = indices_and_tokens(make(token_file))
    loader = make(token_file)
    assert isinstance(loader, torch.utils.data.IterableDataset)
    dl = torch.utils.data.DataLoader(loader, batch_size=None)
    got = []
    for b in dl:
        assert isinstance(b, dict) and b["input_ids"].dtype == torch.int64
        got.append((b["index"], b["input_ids"].clone()))
        if len(got) == 50:
            break
    sd = loader.state_dict()
    assert sd["batches"] == 50
    got += indices_and_tokens(torch.utils.data.DataLoader(make(token_file, state=sd), batch_size=None))
    assert len(got) == len(ref)
    assert all(i == j and torch.equal(x, y) for (i, x), (j, y) in zip(got, ref))


def test_dataloader_with_two_workers_delivers_the_stream_in_order(token_file):
    ref = indices_and_tokens(make(token_file))
    loader = make(token_file)
    next(loader)  # the parent has consumed one batch and has live threads when the workers fork
    dl = torch.utils.data.DataLoader(loader, batch_size=None, num_workers=2)
    got = indices_and_tokens(dl)
    assert [i for i, _ in got] == [i for i, _ in ref[1:]]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(got, ref[1:]))
    assert next(loader)["index"] == 1  # the parent's loader is unaffected


def test_pickle_and_deepcopy_carry_config_and_position(token_file):
    loader = make(token_file)
    for _ in range(3):
        next(loader)
    twin = pickle.loads(pickle.dumps(loader))
    clone = copy.deepcopy(loader)
    a, b, c = next(loader), next(twin), next(clone)
    assert a["index"] == b["index"] == c["index"] == 3
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["input_ids"], c["input_ids"])


def test_on_step_records_the_step(token_file):
    loader = make(token_file)
    model = torch.nn.Linear(2, 2)
    loader.on_step(7, model, torch.optim.SGD(model.parameters(), lr=0.1))
    assert loader.step == 7
    loader.on_step(8)
    assert loader.step == 8


def test_device_cpu_and_pin_memory_without_cuda(token_file):
    a = next(make(token_file, device="cpu", pin_memory=True))
    b = next(make(token_file))
    assert a["input_ids"].device.type == "cpu" and torch.equal(a["input_ids"], b["input_ids"])
