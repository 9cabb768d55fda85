"""pin_memory=True with CUDA, on a CPU-only machine: the plain core page-locks its pooled buffers with the
functions it is given (here ctypes callbacks standing in for cudaHostRegister / cudaHostUnregister, called
from the loader's threads), every batch is a view of such a buffer (no host copy: torch's pin_memory()
is made to fail), each buffer is unlocked exactly once before it is freed, a refused lock is counted and
the stream stays the same; groupmates._transfer.PinnedTransfers keeps a batch's host memory until a
(fake) event after its copy completes. A real GPU never ran this."""
import ctypes
import gc
import os
import threading
import weakref

import numpy as np
import pytest
import torch

import groupmates
from groupmates import _transfer
from groupmates import loader as loader_module
from test_training_batches import fresh_seed

REGISTER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint)
UNREGISTER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
PAGE = os.sysconf("SC_PAGE_SIZE")


class FakeRuntime:
    """cudaHostRegister / cudaHostUnregister as ctypes callbacks; refuses every `refuse_every`-th lock."""

    def __init__(self, refuse_every=0):
        self.lock = threading.Lock()
        self.locked, self.unlocked, self.refused, self.flags = {}, [], [], set()
        self.calls = 0
        self.refuse_every = refuse_every
        self.threads = set()

        def register(ptr, size, flags):
            with self.lock:
                self.calls += 1
                self.threads.add(threading.get_ident())
                if self.refuse_every and self.calls % self.refuse_every == 0:
                    self.refused.append(ptr)
                    return 712  # cudaErrorHostMemoryAlreadyRegistered, say
                assert ptr not in self.locked
                self.locked[ptr] = size
                self.flags.add(flags)
                return 0

        def unregister(ptr):
            with self.lock:
                self.unlocked.append(ptr)
            return 0

        self._register, self._unregister = REGISTER(register), UNREGISTER(unregister)  # kept alive here

    def functions(self):
        return (ctypes.cast(self._register, ctypes.c_void_p).value, ctypes.cast(self._unregister, ctypes.c_void_p).value)

    def buffer_of(self, ptr):
        return next((p for p, size in self.locked.items() if p <= ptr < p + size), None)


@pytest.fixture
def fake_cuda(monkeypatch):
    def install(runtime):
        monkeypatch.setattr(loader_module, "_cuda_available", lambda: True)
        monkeypatch.setattr(_transfer, "cuda_host_register_functions", lambda maps="/proc/self/maps": runtime.functions())

        def no_copy(self, *a, **k):
            raise AssertionError("pin_memory() copied a batch")
        monkeypatch.setattr(torch.Tensor, "pin_memory", no_copy)
    return install


def make(token_file, seed, **kw):
    return groupmates.GroupMatesLoader(sources=[token_file], sequence_length=64, batch_size=4, seed=seed,
                                       num_threads=2, prefetch_batches=3, **kw)


def rows_of(loader, n):
    out = []
    for b in loader:
        out.append(b["input_ids"].clone())
        if len(out) == n:
            break
    return out


def test_batches_are_views_of_page_locked_buffers_each_unlocked_once(token_file, fake_cuda):
    seed = fresh_seed()
    print(f"seed {seed}")
    want = rows_of(make(token_file, seed), 60)
    runtime = FakeRuntime()
    fake_cuda(runtime)
    loader = make(token_file, seed, pin_memory=True)
    got, held = [], []
    for b in loader:
        x = b["input_ids"]
        base = runtime.buffer_of(x.data_ptr())
        assert base is not None, "the batch is not in a page-locked buffer"
        assert x.data_ptr() + x.numel() * 8 <= base + runtime.locked[base]
        got.append(x.clone())
        if len(got) % 7 == 0:
            held.append(b)  # batches the trainer keeps: their buffers stay out of the pool
        if len(got) == 60:
            break
    assert all(torch.equal(a, b) for a, b in zip(got, want)) and len(got) == 60
    s = loader.stats()  # the workers still run: counts read one after the other may grow in between
    assert s.buffers_allocated > 0 and s.pinned_buffers >= s.buffers_allocated
    assert s.pin_failures == 0 and s.pin_last_error == 0
    assert all(p % PAGE == 0 and size % PAGE == 0 for p, size in runtime.locked.items())
    assert runtime.flags == {1}  # cudaHostRegisterPortable
    assert threading.get_ident() not in runtime.threads or len(runtime.threads) > 1  # the loader's threads lock
    loader.close()
    assert len(runtime.locked) >= s.pinned_buffers and loader.stats().pinned_buffers == len(runtime.locked)
    assert not runtime.unlocked or set(runtime.unlocked) <= set(runtime.locked)
    del held, b, x
    gc.collect()
    assert sorted(runtime.unlocked) == sorted(runtime.locked), "every locked buffer is unlocked exactly once"


def test_a_refused_page_lock_is_counted_and_the_stream_is_unchanged(token_file, fake_cuda):
    seed = fresh_seed()
    print(f"seed {seed}")
    want = rows_of(make(token_file, seed), 40)
    runtime = FakeRuntime(refuse_every=2)
    fake_cuda(runtime)
    loader = make(token_file, seed, pin_memory=True)
    got = rows_of(loader, 40)
    assert all(torch.equal(a, b) for a, b in zip(got, want)) and len(got) == 40
    loader.close()
    s = loader.stats()  # of the stopped core
    assert s.pin_failures == len(runtime.refused) > 0 and s.pin_last_error == 712
    assert s.pinned_buffers == len(runtime.locked) and s.pinned_buffers + s.pin_failures >= s.buffers_allocated
    gc.collect()
    assert sorted(runtime.unlocked) == sorted(runtime.locked)  # a refused buffer is never unlocked


class FakeEvent:
    def __init__(self):
        self.done = False
        self.synchronized = False

    def query(self):
        return self.done

    def synchronize(self):
        self.synchronized = self.done = True


def test_pinned_transfers_keep_host_memory_until_the_copy_is_done():
    events = []

    def new_event():
        events.append(FakeEvent())
        return events[-1]

    t = _transfer.PinnedTransfers(torch.device("meta"), limit=2, new_event=new_event, record=lambda e, d: None)
    hosts = [torch.arange(6) + i for i in range(4)]
    alive = [weakref.ref(h) for h in hosts]
    for i in range(2):
        out = t.send(hosts[i])
        assert out.device.type == "meta" and out.shape == hosts[i].shape
        t.sent()
    assert t.pending() == 2
    hosts = None
    gc.collect()
    assert all(a() is not None for a in alive[:2]), "host memory released before its copy completed"
    events[0].done = True
    t.send(torch.zeros(1))
    t.sent()  # drops the completed first batch
    gc.collect()
    assert alive[0]() is None and alive[1]() is not None and t.pending() == 2
    t.send(torch.zeros(1))
    t.sent()  # a third pending batch over limit 2: the oldest is waited for
    assert events[1].synchronized and t.pending() == 2
    t.wait_all()
    assert t.pending() == 0 and all(e.done for e in events)
    gc.collect()
    assert alive[1]() is None


def test_pinned_loader_sends_batches_through_transfers(token_file, fake_cuda, monkeypatch):
    # A fake device ("meta") and events: the loader's batches go through PinnedTransfers, and their host
    # buffers stay out of the pool while their copies are pending.
    seed = fresh_seed()
    print(f"seed {seed}")
    runtime = FakeRuntime()
    fake_cuda(runtime)
    events = []

    class Event(FakeEvent):
        def __init__(self):
            super().__init__()
            events.append(self)

        def record(self, stream=None):
            pass

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: None)
    monkeypatch.setattr(loader_module, "_checked_device", lambda d: torch.device("meta") if d is not None else None)
    loader = make(token_file, seed, pin_memory=True, device="meta")
    n = 0
    for b in loader:
        assert b["input_ids"].device.type == "meta"
        n += 1
        assert loader._to_device.pending() <= loader.config.prefetch_batches
        if n == 20:
            break
    assert len(events) == 20 and sum(e.synchronized for e in events) >= 20 - loader.config.prefetch_batches
    loader.close()  # waits for the pending copies
    s = loader.stats()
    assert s.pinned_buffers == len(runtime.locked) >= s.buffers_allocated
    assert all(e.done for e in events) and loader._to_device.pending() == 0


def test_the_cuda_runtime_is_looked_up_in_the_process_maps(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert _transfer.cuda_host_register_functions(str(maps)) is None  # no CUDA runtime loaded
    maps.write_text("7f00-7f01 r-xp 00000000 08:01 1 /nonexistent/libcudart.so.12\n")
    assert _transfer.cuda_host_register_functions(str(maps)) is None  # not loadable
    assert _transfer.cuda_host_register_functions(str(tmp_path / "missing")) is None
    if not torch.cuda.is_available():
        assert _transfer.cuda_host_register_functions() is None  # this CPU-only torch loaded none
