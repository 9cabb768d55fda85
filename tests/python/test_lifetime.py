"""Early break, KeyboardInterrupt (SIGINT to a process iterating), gc of live loaders, exit."""
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import torch

import groupmates
from conftest import run_python, windows

T, B = 64, 4


def endless(token_file, **kw):
    args = dict(sources=[token_file], sequence_length=T, batch_size=B, epochs=0, prefetch_batches=4)
    args.update(kw)
    return groupmates.GroupMatesLoader(**args)


def worker_threads():
    # Threads of this process (the C++ workers are not Python threads). Tests compare with `<= before`:
    # a thread an earlier test left (e.g. a DataLoader's) may end meanwhile; a leaked worker adds one.
    return len(os.listdir(f"/proc/{os.getpid()}/task"))


def test_break_joins_the_worker_threads(token_file):
    before = worker_threads()
    loader = endless(token_file, num_threads=3)
    assert worker_threads() <= before  # threads start lazily, at the first batch
    for i, _ in enumerate(loader):
        if i == 0:
            assert worker_threads() >= before + 4  # planner + 3 pool threads
        if i == 5:
            break
    assert worker_threads() <= before
    assert next(loader)["index"] == 6  # and the stream goes on
    loader.close()
    assert worker_threads() <= before


def test_gc_of_live_loaders_does_not_hang_and_batches_survive(token_file):
    before = worker_threads()
    ref = windows(token_file, T)
    kept = []
    t0 = time.monotonic()
    for _ in range(20):
        loader = endless(token_file, shuffle=False)
        it = iter(loader)
        kept.append(next(it)["input_ids"])  # no clone: the buffer outlives its loader
        del loader, it                     # workers busy prefetching into a full queue
    gc.collect()
    assert time.monotonic() - t0 < 20
    assert worker_threads() <= before
    for x in kept:
        np.testing.assert_array_equal(x.numpy(), ref[:B])


def test_close_from_another_thread_while_iterating(token_file):
    loader = endless(token_file)
    seen = []

    def consume():
        try:
            for b in loader:
                seen.append(b["index"])
        except groupmates.GroupMatesError:
            seen.append("closed")

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.2)
    loader.close()
    t.join(10)
    assert not t.is_alive() and seen[-1] == "closed"


def test_exit_with_live_loaders_is_prompt(token_file):
    code = textwrap.dedent(f"""
        import groupmates
        loaders = [groupmates.GroupMatesLoader(sources=[{token_file!r}], sequence_length=64, epochs=0) for _ in range(3)]
        it = iter(loaders[0]); next(it)
        cycle = {{"loader": loaders[1]}}; cycle["self"] = cycle   # only the cyclic gc could free it
        print("ok", flush=True)
    """)
    t0 = time.monotonic()
    r = run_python(code, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok" and time.monotonic() - t0 < 30


def _interrupted_child(token_file, catch):
    code = textwrap.dedent(f"""
        import os, signal, sys, time, groupmates
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored (a background job)
        base = len(os.listdir(f"/proc/{{os.getpid()}}/task"))
        loader = groupmates.GroupMatesLoader(sources=[{token_file!r}], sequence_length=64, batch_size=16,
                                             epochs=0, num_threads=2)
        n = 0
        try:
            for batch in loader:
                n += 1
                if n == 3:
                    print("ready", flush=True)
                time.sleep(0.001)   # a training step
        except KeyboardInterrupt:
            if not {catch}:
                raise
            tasks = len(os.listdir(f"/proc/{{os.getpid()}}/task"))
            print("interrupted", n > 3, loader.state_dict()["batches"] == n, "threads", tasks - base, flush=True)
            # the loader is usable again after the interrupt
            print("next", next(loader)["index"] == n, flush=True)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=20)
    return p.returncode, out, err, time.monotonic() - t0


def test_keyboard_interrupt_stops_promptly(token_file):
    rc, out, err, secs = _interrupted_child(token_file, catch=True)
    assert rc == 0, err
    words = out.split()
    assert words[:3] == ["interrupted", "True", "True"]
    assert int(words[4]) == 0  # no thread beyond those before the loader: the workers were joined
    assert "next True" in out
    assert secs < 10


def test_uncaught_keyboard_interrupt_exits(token_file):
    rc, out, err, secs = _interrupted_child(token_file, catch=False)
    assert rc != 0 and "KeyboardInterrupt" in err
    assert secs < 10


def test_context_manager_closes(token_file):
    with endless(token_file) as loader:
        next(loader)
    assert loader.closed


def test_threads_read_concurrently_without_the_gil(token_file):
    # Two Python threads pulling from one loader: every batch is delivered once, in order per pull.
    loader = groupmates.GroupMatesLoader(sources=[token_file], sequence_length=T, batch_size=B, shuffle=False)
    got = []
    lock = threading.Lock()

    def pull():
        while True:
            try:
                b = next(loader)
            except StopIteration:
                return
            with lock:
                got.append(b["index"])

    threads = [threading.Thread(target=pull) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(got) == list(range(len(windows(token_file, T)) // B))
