#!/usr/bin/python3
"""What a Python encoder would cost the training loop as a callback, against the scripted module the
engine runs (why SelectionConfig(encoder=nn.Module) scripts the module instead of calling back).

A selecting loader embeds every window on its scorer thread. Called back into Python, the encoder's
forward needs the GIL there, against the training loop's own Python. This measures, in one process:
  eager:     the module's forward on a window [W, T] (what a callback would run), seconds per window
  scripted:  torch.jit.script(module) on the same window (what the engine runs, here called from Python)
  loop:      a pure-Python loop standing for the trainer's Python work, alone, then beside a thread
             encoding windows back to back with the eager module (callback-like: the forward's Python
             holds the GIL), then beside one with the scripted module (the call releases the GIL)
Two encoders: MeanPool (embedding + mean + Linear) and the attention encoder of
examples/export_torchscript_encoder.py. Ends with
RESULT scripted_vs_eager_forward=<x> loop_slowdown_eager=<y> loop_slowdown_scripted=<z> (attention encoder;
x = scripted seconds / eager seconds per window; y, z = median of paired ratios, loop time beside the
encoding thread / alone just before).

    /usr/bin/python3 bench/bench_python_encoder.py [--window 512] [--seq-len 128] [--repeats 5]
"""
import argparse
import os
import statistics
import sys
import threading
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from export_torchscript_encoder import TinySentenceEncoder  # noqa: E402


class MeanPool(nn.Module):
    def __init__(self, vocab=50304, width=64, dim=64):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.proj = nn.Linear(width, dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = mask.to(torch.float32).unsqueeze(-1)
        return self.proj((self.embed(ids) * w).sum(1) / w.sum(1).clamp_min(1.0))


def python_loop(n=1_000_000):
    """Pure-Python work (holds the GIL throughout): seconds."""
    t = time.perf_counter()
    acc = 0
    for i in range(n):
        acc += i % 7
    return time.perf_counter() - t


def per_window(fn, ids, mask, repeats):
    times = []
    with torch.no_grad():
        fn(ids, mask)  # warm-up (the scripted module's first calls optimise its graph)
        fn(ids, mask)
        for _ in range(repeats):
            t = time.perf_counter()
            fn(ids, mask)
            times.append(time.perf_counter() - t)
    return statistics.median(times), min(times), max(times)


def loop_slowdown(fn, ids, mask, repeats):
    """Median over repeats of (loop time beside a thread encoding windows back to back with fn) / (loop
    time alone just before): paired, so warm-up and the machine's drift cancel."""
    ratios = []
    for _ in range(repeats):
        python_loop()  # warm-up
        alone = python_loop()
        ratios.append(loop_beside(fn, ids, mask) / alone)
    return statistics.median(ratios), min(ratios), max(ratios)


def loop_beside(fn, ids, mask):
    """Loop time while a thread encodes windows back to back with fn."""
    stop = threading.Event()

    def encode():
        with torch.no_grad():
            while not stop.is_set():
                fn(ids, mask)

    th = threading.Thread(target=encode)
    th.start()
    time.sleep(0.2)
    t = python_loop()
    stop.set()
    th.join()
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.manual_seed(0)
    ids = torch.randint(0, 50257, (a.window, a.seq_len))
    mask = torch.ones_like(ids)
    print(f"window {a.window} x {a.seq_len} tokens, {torch.get_num_threads()} intra-op threads, "
          f"median of {a.repeats} (range)")
    python_loop()
    alone = statistics.median(python_loop() for _ in range(a.repeats))
    print(f"python loop alone: {alone * 1e3:.1f} ms (slowdowns below: each beside-run over the loop alone just before it)")
    result = None
    for name, module in (("mean_pool", MeanPool().eval()), ("attention", TinySentenceEncoder().eval())):
        scripted = torch.jit.script(module)
        e = per_window(module, ids, mask, a.repeats)
        s = per_window(scripted, ids, mask, a.repeats)
        le = loop_slowdown(module, ids, mask, a.repeats)
        ls = loop_slowdown(scripted, ids, mask, a.repeats)
        tokens = a.window * a.seq_len
        print(f"{name}: eager {e[0] * 1e3:.1f} ms/window ({e[1] * 1e3:.1f}-{e[2] * 1e3:.1f}; {tokens / e[0]:.3g} tokens/s), "
              f"scripted {s[0] * 1e3:.1f} ms ({s[1] * 1e3:.1f}-{s[2] * 1e3:.1f}; {tokens / s[0]:.3g} tokens/s); "
              f"python loop beside eager {le[0]:.2f}x ({le[1]:.2f}-{le[2]:.2f}), "
              f"beside scripted {ls[0]:.2f}x ({ls[1]:.2f}-{ls[2]:.2f})")
        result = (s[0] / e[0], le[0], ls[0])
    print("RESULT scripted_vs_eager_forward=%.3f loop_slowdown_eager=%.2f loop_slowdown_scripted=%.2f" % result)


if __name__ == "__main__":
    main()
