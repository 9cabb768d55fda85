#!/usr/bin/python3
"""make bench-throughput: tokens/s delivered as [B, T] int64 batches (B=16, T=1024, shuffled) from
one ~1 GB uint16 token file by groupmates (plain mode), by torch.utils.data.DataLoader over the same
memory-mapped file (best of num_workers 0 and 2), and by a tight copy loop (the ceiling), all in
one run. Last line: RESULT plain_vs_torch=<ratio> plain_vs_ceiling=<ratio>."""
import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch


def make_file(path, tokens):
    if os.path.exists(path) and os.path.getsize(path) == tokens * 2:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    rng = np.random.default_rng(0)
    with open(tmp, "wb") as f:
        chunk = 1 << 24
        for start in range(0, tokens, chunk):
            rng.integers(0, 50257, size=min(chunk, tokens - start), dtype=np.uint16).tofile(f)
    os.replace(tmp, path)  # atomic: a concurrent run never sees half a file


class Windows(torch.utils.data.Dataset):
    """The plain PyTorch way: one window per __getitem__, from a numpy memmap."""

    def __init__(self, path, seq_len):
        self.path, self.seq_len = path, seq_len
        self.n = os.path.getsize(path) // 2 // seq_len
        self.data = None

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if self.data is None:  # opened lazily in each worker
            self.data = np.memmap(self.path, dtype=np.uint16, mode="r")
        w = self.data[i * self.seq_len:(i + 1) * self.seq_len]
        return torch.from_numpy(w.astype(np.int64))


def torch_dataloader(path, batch, seq_len, batches, workers):
    loader = torch.utils.data.DataLoader(Windows(path, seq_len), batch_size=batch, shuffle=True,
                                         num_workers=workers, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    next(it)  # start-up (worker spawn) is not counted
    t0 = time.perf_counter()
    for _ in range(batches):
        x = next(it)
    secs = time.perf_counter() - t0
    assert x.shape == (batch, seq_len) and x.dtype == torch.int64
    return batches * batch * seq_len / secs


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", default="build")
    ap.add_argument("--file", default="data/bench/tokens_u16_1g.bin")
    ap.add_argument("--tokens", type=int, default=512 * 1024 * 1024, help="file size in tokens (1 GiB of uint16)")
    ap.add_argument("--batches", type=int, default=3000)
    ap.add_argument("--torch-batches", type=int, default=600)
    args = ap.parse_args()
    B, T = 16, 1024

    make_file(args.file, args.tokens)
    print(f"token file: {args.file} ({os.path.getsize(args.file) / 2**30:.2f} GiB), B={B} T={T}, {os.cpu_count()} cores")
    with open(args.file, "rb") as f:  # warm the page cache so every contender reads from memory
        while f.read(1 << 26):
            pass

    out = subprocess.run([os.path.join(args.build, "bench", "bench_throughput"), args.file,
                          "--batches", str(args.batches), "--batch", str(B), "--seq-len", str(T)],
                         check=True, capture_output=True, text=True).stdout
    figures = dict(line.split() for line in out.strip().splitlines())
    plain = float(figures["groupmates_plain_tokens_per_s"])
    ceiling = float(figures["ceiling_tokens_per_s"])

    torch.set_num_threads(1)
    best_torch, best_workers = 0.0, None
    for workers in (0, 2):
        tps = torch_dataloader(args.file, B, T, args.torch_batches, workers)
        print(f"torch DataLoader num_workers={workers}: {tps / 1e6:.1f} M tokens/s")
        if tps > best_torch:
            best_torch, best_workers = tps, workers
    print(f"groupmates plain: {plain / 1e6:.1f} M tokens/s")
    print(f"tight copy loop (ceiling): {ceiling / 1e6:.1f} M tokens/s")
    print(f"best torch DataLoader (num_workers={best_workers}): {best_torch / 1e6:.1f} M tokens/s")
    print(f"RESULT plain_vs_torch={plain / best_torch:.2f} plain_vs_ceiling={plain / ceiling:.2f}")


if __name__ == "__main__":
    sys.exit(main())
