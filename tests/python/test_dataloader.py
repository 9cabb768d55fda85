"""GroupMatesLoader inside torch.utils.data.DataLoader(batch_size=None) and groupmates.DataLoader (worker
processes splitting the stream, exact state), pickling, on_step."""
import copy
import os
import pickle
import random

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


def tag_worker_reads(batch):
    """collate_fn run in the worker: how many batches this worker's core has returned so far."""
    info = torch.utils.data.get_worker_info()
    batch["worker"], batch["worker_read"] = info.id, info.dataset.stats()["batches"]
    return batch


# Tests whose DataLoader workers are forked from a process with live threads: safe with glibc's allocator (it
# has fork handlers); GCC 12's ASan allocator has none (LLVM added them in Dec 2023, llvm-project #75290), so a
# worker can deadlock on a lock another thread held at the fork. scripts/test-python-asan.sh deselects them.
FORKS_WITH_THREADS = pytest.mark.forks_with_threads


@FORKS_WITH_THREADS
@pytest.mark.parametrize("workers", [1, 2])
def test_plain_dataloader_workers_split_the_stream_and_never_replay_silently(token_file, workers):
    ref = indices_and_tokens(make(token_file))
    loader = make(token_file)
    next(loader)  # the parent has consumed one batch and has live threads when the workers fork
    dl = torch.utils.data.DataLoader(loader, batch_size=None, num_workers=workers, collate_fn=tag_worker_reads)
    got, reads = [], {}
    for b in dl:
        got.append((b["index"], b["input_ids"].clone()))
        reads[b["worker"]] = reads.get(b["worker"], 0) + 1
        # each worker read its own share only: its core returned exactly the batches it delivered
        assert b["worker_read"] == reads[b["worker"]], (b["index"], b["worker"], b["worker_read"])
    assert [i for i, _ in got] == [i for i, _ in ref[1:]]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(got, ref[1:]))
    assert len(reads) == workers
    # The parent cannot know what the workers delivered: no silent replay from batch 1.
    for use in (loader.state_dict, lambda: next(loader), lambda: next(iter(dl))):
        with pytest.raises(groupmates.StateError, match="groupmates.DataLoader"):
            use()
    loader.load_state_dict(make(token_file).state_dict())  # a known position again
    assert next(loader)["index"] == 0


@pytest.mark.parametrize("workers,context", [(0, None)] + [pytest.param(w, None, marks=FORKS_WITH_THREADS) for w in (1, 2, 3)]
                         + [(2, "spawn")])
def test_groupmates_dataloader_state_is_exact_and_a_second_iteration_resumes(token_file, workers, context):
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed={seed}")  # replay: set this seed below
    rng = random.Random(seed)
    ref_loader = make(token_file)
    ref, ref_states = [], []
    for b in ref_loader:
        ref.append((b["index"], b["input_ids"].clone()))
        ref_states.append(ref_loader.state_dict()["state"])
    cuts = sorted(rng.sample(range(1, len(ref) - 1), 2))
    loader = make(token_file)
    dl = groupmates.DataLoader(loader, num_workers=workers, multiprocessing_context=context)
    got = []
    for cut in cuts:
        for b in dl:
            got.append((b["index"], b["input_ids"].clone()))
            assert set(b) == {"input_ids", "ids", "index"}
            if len(got) == cut:
                break
        sd = dl.state_dict()
        assert sd["batches"] == cut and sd["state"] == ref_states[cut - 1], (seed, cut)
    resumed = make(token_file, state=sd)  # the saved state restores in a fresh loader too
    assert next(resumed)["index"] == cuts[-1]
    got += indices_and_tokens(dl)  # the rest, then the end
    assert [i for i, _ in got] == [i for i, _ in ref], seed
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(got, ref)), seed
    assert list(dl) == []


@FORKS_WITH_THREADS
def test_groupmates_dataloader_refuses_what_would_break_the_state(token_file):
    loader = make(token_file)
    with pytest.raises(groupmates.ConfigError, match="DataLoader.batch_size"):
        groupmates.DataLoader(loader, batch_size=2)
    with pytest.raises(groupmates.ConfigError, match="DataLoader.persistent_workers"):
        groupmates.DataLoader(loader, num_workers=1, persistent_workers=True)
    with pytest.raises(groupmates.ConfigError, match="DataLoader.dataset"):
        groupmates.DataLoader([1, 2])
    with pytest.raises(groupmates.ConfigError, match="LoaderConfig.reader_count"):
        next(iter(torch.utils.data.DataLoader(make(token_file, reader_count=2), batch_size=None, num_workers=1)))


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
