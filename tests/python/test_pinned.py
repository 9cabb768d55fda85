"""pin_memory=True with CUDA, on a CPU-only machine: the plain core page-locks its pooled buffers with the
functions it is given (here ctypes callbacks standing in for cudaHostRegister / cudaHostUnregister /
cudaSetDevice, called from the loader's threads), every batch is sent straight from such a buffer (no
host copy: torch's pin_memory() is made to fail; "meta" stands in for the CUDA device), each buffer is
unlocked exactly once before it is freed, a refused lock is counted and the stream stays the same,
nothing is pinned without a device; groupmates._transfer.PinnedTransfers keeps a batch's host memory
until a (fake) event after its copy completes. A real GPU never ran this."""
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
SET_DEVICE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)
GET_DEVICE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int))
PAGE = os.sysconf("SC_PAGE_SIZE")


class FakeRuntime:
    """cudaHostRegister / cudaHostUnregister / cudaSetDevice / cudaGetDevice as ctypes callbacks, with a
    current device per thread (0 until set); refuses every `refuse_every`-th lock; records the threads
    calling, and every call made without `device` current in `violations` (an exception in a ctypes
    callback would only be printed)."""

    def __init__(self, device, refuse_every=0):
        self.lock = threading.Lock()
        self.device = device
        self.locked, self.unlocked, self.refused, self.flags, self.violations = {}, [], [], set(), []
        self.calls = 0
        self.refuse_every = refuse_every
        self.threads = set()
        self.current = {}  # thread ident -> its current device (a ctypes callback on a C++ thread gets a
        #                    fresh Python thread state each call: threading.local would not persist)

        def here():
            return self.current.get(threading.get_ident(), 0)

        def register(ptr, size, flags):
            with self.lock:
                self.calls += 1
                self.threads.add(threading.get_ident())
                if here() != self.device:
                    self.violations.append(f"cudaHostRegister on device {here()}")
                if self.refuse_every and self.calls % self.refuse_every == 0:
                    self.refused.append(ptr)
                    return 712  # cudaErrorHostMemoryAlreadyRegistered, say
                if ptr in self.locked:
                    self.violations.append("locked twice")
                self.locked[ptr] = size
                self.flags.add(flags)
                return 0

        def unregister(ptr):
            with self.lock:
                if here() != self.device:
                    self.violations.append(f"cudaHostUnregister on device {here()}")
                self.unlocked.append(ptr)
            return 0

        def set_device(device):
            with self.lock:
                self.current[threading.get_ident()] = device
            return 0

        def get_device(out):
            with self.lock:
                out[0] = here()
            return 0

        self._fns = (REGISTER(register), UNREGISTER(unregister), SET_DEVICE(set_device), GET_DEVICE(get_device))

    def functions(self):
        return tuple(ctypes.cast(f, ctypes.c_void_p).value for f in self._fns)

    def buffer_of(self, ptr):
        return next((p for p, size in self.locked.items() if p <= ptr < p + size), None)


class FakeCudaEvent:
    """Completes at its second query (or when waited for)."""

    def __init__(self):
        self.queries, self.done, self.synchronized, self.stream = 0, False, False, None

    def record(self, stream=None):
        self.stream = stream

    def query(self):
        self.queries += 1
        self.done = self.done or self.queries >= 2
        return self.done

    def synchronize(self):
        self.synchronized = self.done = True


@pytest.fixture
def fake_cuda(monkeypatch):
    """Installs a FakeRuntime, fake events and streams, the "meta" device standing in for "cuda:N", and
    returns the log of what PinnedTransfers sent: [(data_ptr, clone, contiguous)] per host tensor."""
    sent = []

    def install(runtime):
        monkeypatch.setattr(loader_module, "_cuda_available", lambda: True)
        monkeypatch.setattr(loader_module, "_PINNED_DEVICE_TYPE", "meta")
        monkeypatch.setattr(loader_module, "_current_cuda_device", lambda: 3)
        monkeypatch.setattr(_transfer, "cuda_host_register_functions", lambda maps="/proc/self/maps": runtime.functions())
        monkeypatch.setattr(loader_module, "_checked_device", lambda d: None if d is None else torch.device(d))
        monkeypatch.setattr(torch.cuda, "Event", FakeCudaEvent)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: ("stream", str(device)))

        def no_copy(self, *a, **k):
            raise AssertionError("pin_memory() copied a batch")
        monkeypatch.setattr(torch.Tensor, "pin_memory", no_copy)
        send = _transfer.PinnedTransfers.send

        def spy(self, x):
            sent.append((x.data_ptr(), x.clone(), x.is_contiguous()))
            return send(self, x)
        monkeypatch.setattr(_transfer.PinnedTransfers, "send", spy)
        return sent
    return install


def make(token_file, seed, **kw):
    return groupmates.GroupMatesLoader(sources=[token_file], sequence_length=64, batch_size=4, seed=seed,
                                       num_threads=2, prefetch_batches=3, **kw)


def rows_of(loader, n, key="input_ids"):
    out = []
    for b in loader:
        out.append(b[key].clone())
        if len(out) == n:
            break
    return out


def test_batches_are_sent_from_page_locked_buffers_each_unlocked_once(token_file, fake_cuda):
    seed = fresh_seed()
    print(f"seed {seed}")
    want = rows_of(make(token_file, seed), 60)
    runtime = FakeRuntime(device=3)
    sent = fake_cuda(runtime)
    main = threading.get_ident()
    runtime.current[main] = 5  # the training thread's own current device: freeing a buffer here keeps it
    loader = make(token_file, seed, pin_memory=True, device="meta")
    n, held = 0, []
    for b in loader:
        assert b["input_ids"].device.type == "meta" and b["input_ids"].shape == (4, 64)
        assert loader._to_device.pending() <= loader.config.prefetch_batches
        n += 1
        if n % 7 == 0:
            held.append(b)
        if n == 60:
            break
    assert len(sent) == 60 and all(torch.equal(x, w) for (_, x, _), w in zip(sent, want))
    for ptr, x, contiguous in sent:
        base = runtime.buffer_of(ptr)
        assert base is not None and contiguous, "a batch was not sent straight from a page-locked buffer"
        assert ptr + x.numel() * 8 <= base + runtime.locked[base]
    s = loader.stats()  # of the stopped core (the break suspended it: threads joined, copies waited for)
    assert s.buffers_allocated > 0 and s.pinned_buffers == len(runtime.locked) >= s.buffers_allocated
    assert s.pin_failures == 0 and s.pin_last_error == 0
    assert all(p % PAGE == 0 and size % PAGE == 0 for p, size in runtime.locked.items())
    assert runtime.flags == {1}  # cudaHostRegisterPortable
    assert main not in runtime.threads  # the loader's threads lock, without the GIL held here
    loader.close()
    del held, b
    gc.collect()
    assert sorted(runtime.unlocked) == sorted(runtime.locked), "every locked buffer is unlocked exactly once"
    assert not runtime.violations, runtime.violations[:3]  # every call with the loader's device (3) current
    assert runtime.current[main] == 5, "freeing buffers changed the training thread's CUDA device"


def test_a_refused_page_lock_is_counted_and_the_stream_is_unchanged(token_file, fake_cuda):
    seed = fresh_seed()
    print(f"seed {seed}")
    want = rows_of(make(token_file, seed), 40)
    runtime = FakeRuntime(device=0, refuse_every=2)
    sent = fake_cuda(runtime)
    loader = make(token_file, seed, pin_memory=True, device="meta:0")
    rows_of(loader, 40)
    assert len(sent) == 40 and all(torch.equal(x, w) for (_, x, _), w in zip(sent, want))
    loader.close()
    s = loader.stats()
    assert s.pin_failures == len(runtime.refused) > 0 and s.pin_last_error == 712
    assert s.pinned_buffers == len(runtime.locked) and s.pinned_buffers + s.pin_failures >= s.buffers_allocated
    gc.collect()
    assert sorted(runtime.unlocked) == sorted(runtime.locked)  # a refused buffer is never unlocked
    assert not runtime.violations, runtime.violations[:3]  # "meta:0": device index 0


def test_without_a_device_nothing_is_pinned(token_file, fake_cuda):
    # The caller would copy the batch itself: a pinned buffer could be refilled under a non_blocking copy.
    runtime = FakeRuntime(device=3)
    fake_cuda(runtime)
    loader = make(token_file, fresh_seed(), pin_memory=True)
    rows_of(loader, 5)
    assert loader.stats().pinned_buffers == 0 and not runtime.locked and loader._to_device is None
    loader.close()


def test_with_labels_the_whole_rows_are_sent_once(token_file, fake_cuda):
    seed = fresh_seed()
    print(f"seed {seed}")
    plain = make(token_file, seed, labels=True)
    want = rows_of(plain, 10, key="tokens")
    runtime = FakeRuntime(device=3)
    sent = fake_cuda(runtime)
    loader = make(token_file, seed, pin_memory=True, device="meta", labels=True)
    for i, b in enumerate(loader):
        assert b["input_ids"].device.type == "meta" and b["input_ids"].shape == (4, 64) and b["input_ids"].is_contiguous()
        assert b["labels"].device.type == "meta" and b["loss_mask"].device.type == "meta"
        if i == 9:
            break
    assert len(sent) == 10 and all(c and x.shape == (4, 65) for _, x, c in sent)
    assert all(torch.equal(x, w) for (_, x, _), w in zip(sent, want))
    loader.close()


def test_a_pinned_loader_pickles_without_its_transfers(token_file, fake_cuda):
    import pickle
    runtime = FakeRuntime(device=3)
    fake_cuda(runtime)
    loader = make(token_file, fresh_seed(), pin_memory=True, device="meta")
    rows_of(loader, 6)
    copy = pickle.loads(pickle.dumps(loader))
    assert copy._to_device is None and copy.state_dict()["batches"] == 6
    got = rows_of(copy, 2)  # the copy pins again: its transfers are made anew
    assert copy._to_device is not None and len(got) == 2 and copy.stats().pinned_buffers > 0
    copy.close()
    loader.close()


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
    half = torch.ones(3)
    t.send(half)  # a batch whose sending stopped half way (no sent()): wait_all waits for it too
    half_alive = weakref.ref(half)
    half = None
    t.wait_all()
    assert t.pending() == 0 and all(e.done for e in events) and events[-1].synchronized
    gc.collect()
    assert alive[1]() is None and half_alive() is None


def test_the_cuda_runtime_is_found_among_the_mapped_files(tmp_path):
    line = "7f00-7f01 r-xp 00000000 08:01 1234    {}\n".format
    assert _transfer.cudart_path([line("/usr/lib/x86_64-linux-gnu/libc.so.6"), "7f00-7f01 rw-p 00000000 00:00 0\n"]) is None
    assert _transfer.cudart_path([line("/usr/lib/libcudart.so.12")]) == "/usr/lib/libcudart.so.12"
    # torch's (or NVIDIA's wheel's) runtime first; hashed names, spaces, a "(deleted)" mark
    lines = [line("/opt/cuda/lib64/libcudart.so.12.2.140"),
             line("/home/a user/venv/lib/python3.11/site-packages/torch/lib/libcudart-a1b2c3d4.so.11.0 (deleted)")]
    assert _transfer.cudart_path(lines) == "/home/a user/venv/lib/python3.11/site-packages/torch/lib/libcudart-a1b2c3d4.so.11.0"
    assert _transfer.cudart_path([line("/x/nvidia/cuda_runtime/lib/libcudart.so.12"), line("/y/libcudart.so.12")]) == \
        "/x/nvidia/cuda_runtime/lib/libcudart.so.12"
    maps = tmp_path / "maps"
    maps.write_text(line("/nonexistent/libcudart.so.12"))
    assert _transfer.cuda_host_register_functions(str(maps)) is None  # found but not loadable
    assert _transfer.cuda_host_register_functions(str(tmp_path / "missing")) is None
    if not torch.cuda.is_available():
        assert _transfer.cuda_host_register_functions() is None  # this CPU-only torch loaded none
