#!/usr/bin/env python3
"""Soak: GroupMatesLoader with Group-MATES selection and probes on (refresh when ready, the default),
at full speed for a fixed time, watching for growth. A small GPT (examples/gpt_common.py, d 32, 1
layer) trains on the embedded corpus streamed endlessly (JSONL tokenized on the loader's workers,
reshuffled each epoch), probes every --probe-every steps with reference rows from the held-out
text, and saves the loader's state_dict() every --state-every steps (what a checkpoint costs).
The control path runs at full load from the start: no probe budget, and (unless --gate) no refresh
gate and no back-off, so every probe's refresh trains and publishes a new model version (with the
defaults the gate decides from the data when publishing starts: in one 25-minute run only after
minute 18, so the run's end measured a new regime rather than growth).

Every --sample-seconds it samples the process's RSS (/proc/self/status VmRSS), glibc's heap over every
arena (mallinfo2: bytes in use, bytes free inside the heap; RSS growing with the in-use flat is the
allocator keeping freed memory, growing with it a leak), its thread count (/proc/self/task) and the loader's own counts: the core's pooled window buffers (buffers_allocated),
the depth of the pipeline's queues and buffers (batches in flight in the core's prefetch, rollouts in
the label buffer, rows in the replay buffer, model versions whose weights are kept, refreshes pending;
the window scored ahead is one by construction), the probe in flight, refreshes, recorded version switches. The first
--warmup share of the run is warm-up (allocator caches, the label buffer filling up to its bound). After
it: rss_growth_pct = median RSS of the last 10% of the samples against the median of the first 10% after
warm-up; threads_growth = the same with the thread count less the probe in flight (a probe runs on a
thread of its own that comes and goes); queues_growth = over the depths without a bound (versions held,
refreshes pending), how much the median of the last 10% exceeds the largest of the first 10%. Pass: rss_growth_pct < --max-rss-growth (5), threads_growth ==
0, queues_growth == 0, every bounded depth within its bound (prefetch_batches, label_buffer_rollouts,
replay_rows), at least one refresh published, and no refresh, probe or probe
timeout failed.

Writes samples.csv and soak.png (RSS with the heap in use and free, threads, and the depths against their bounds
over time) to --out; prints a table every minute
and, last, RESULT soak_minutes=<m> rss_growth_pct=<g> threads_growth=<t> steps=<n> ... ok=<0|1>.

    make soak SOAK_MINUTES=30      # or SOAK_SECONDS=...
"""
import argparse
import csv
import ctypes
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "examples"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import groupmates  # noqa: E402
from gpt_common import GPT  # noqa: E402


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                                               "uordblks", "fordblks", "keepcost")]


def _mallinfo2():
    try:
        f = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        print("soak: no mallinfo2 (not glibc >= 2.33): the heap columns are 0", flush=True)
        return None
    f.restype = _MallInfo2
    return f


_MALLINFO2 = _mallinfo2()


def heap_bytes():
    """glibc's heap over every arena: (bytes in use, bytes free inside the heap). In use flat while RSS grows is the
    allocator keeping freed memory (fragmentation); in use growing is a leak."""
    if _MALLINFO2 is None:
        return 0, 0
    m = _MALLINFO2()
    return m.uordblks + m.hblkhd, m.fordblks


def thread_count():
    return len(os.listdir("/proc/self/task"))


def held_out_rows(tok, corpus, seq_len, rows=8):
    ids = []
    with open(os.path.join(corpus, "austen_heldout.jsonl")) as f:
        for line in f:
            ids += tok.encode(json.loads(line)["text"]) + [tok.eos_id]
            if len(ids) >= rows * (seq_len + 1):
                break
    return torch.tensor(ids[: rows * (seq_len + 1)], dtype=torch.int64).view(rows, seq_len + 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=1800)
    ap.add_argument("--sample-seconds", type=float, default=2.0)
    ap.add_argument("--warmup", type=float, default=1 / 3, help="share of the run that is warm-up")
    ap.add_argument("--max-rss-growth", type=float, default=5.0, help="percent, after warm-up")
    ap.add_argument("--corpus", default=os.environ.get("GROUPMATES_CORPUS", os.path.join(REPO, "data", "corpus")))
    ap.add_argument("--out", default=os.path.join(REPO, "build", "soak"))
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--probe-every", type=int, default=50)
    ap.add_argument("--state-every", type=int, default=200)
    ap.add_argument("--heap-release-seconds", type=float, default=None,
                    help="SelectionConfig.heap_release_interval_seconds (default: the library's; 0: never, the control)")
    ap.add_argument("--gate", action="store_true",
                    help="keep the refresh gate and the probes' back-off (defaults): then when refreshes start "
                         "to be published depends on the data, and the soak may see that regime only at its end")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)

    tok = groupmates.Tokenizer(os.path.join(args.corpus, "austen.model"))
    source = groupmates.SourceConfig(paths=[os.path.join(args.corpus, "austen.jsonl")], format="jsonl",
                                     tokenizer_model=os.path.join(args.corpus, "austen.model"))
    probes = groupmates.ProbeConfig(interval_steps=args.probe_every, effect_delay_steps=args.probe_every // 2,
                                    rollout_length=4, random_rollouts=6, neighbour_rollouts=6, bootstrap_pairs=2,
                                    budget=0.0,  # probes as often as configured: the control path at full load
                                    gated_backoff_max=7 if args.gate else 0)
    selection = groupmates.SelectionConfig(mode="group", window_size=16 * args.batch, clusters=4,
                                           refresh_train_steps=30, label_buffer_rollouts=256,
                                           refresh_gate=args.gate)  # without the gate every refresh is published
    if args.heap_release_seconds is not None:
        selection.heap_release_interval_seconds = args.heap_release_seconds
    loader = groupmates.GroupMatesLoader(sources=[source], sequence_length=args.seq_len, labels=True,
                                         batch_size=args.batch, eos_id=tok.eos_id, vocab_size=tok.vocab_size,
                                         epochs=0, num_threads=2, selection=selection, probes=probes)
    refs = held_out_rows(tok, args.corpus, args.seq_len)
    loader.set_reference(refs)
    model = GPT(tok.vocab_size, dim=32, layers=1, heads=2, seq_len=args.seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    # Queue and buffer depths, each with the bound it must stay within (None: reported, bounded by the design only).
    bounds = {"batches_in_flight": loader.config.prefetch_batches,
              "label_buffer_rollouts": selection.label_buffer_rollouts, "replay_rows": selection.replay_rows,
              "versions_held": None, "refreshes_pending": None}
    depths = list(bounds)
    fields = ["seconds", "steps", "rss_mb", "heap_in_use_mb", "heap_free_mb", "threads", "buffers_allocated", "probe_in_flight", "probes_completed",
              "refreshes", "switches", "windows"] + depths
    samples = []
    t0 = time.monotonic()
    next_sample = t0
    last_table = t0 - 60
    step = 0
    print(f"soak: {args.seconds:.0f} s, sampling every {args.sample_seconds} s, warm-up {args.warmup:.0%} "
          f"(machine shared: the figures are this process's own)", flush=True)
    print(" ".join(f"{h:>17}" for h in fields), flush=True)
    while True:
        now = time.monotonic()
        if now >= next_sample:
            s = loader.selection_stats()
            p = s.probes
            core = loader.stats()
            in_use, free = heap_bytes()
            samples.append(dict(seconds=now - t0, steps=step, rss_mb=rss_bytes() / 2**20, heap_in_use_mb=in_use / 2**20,
                                heap_free_mb=free / 2**20, threads=thread_count(),
                                buffers_allocated=core["buffers_allocated"],
                                probe_in_flight=p.probes_started - p.probes_completed - p.probes_failed
                                - p.probes_timed_out, probes_completed=p.probes_completed,
                                refreshes=s.refreshes, switches=len(s.switches), windows=s.windows,
                                batches_in_flight=core["batches_in_flight"],
                                **{d: s[d] for d in depths if d != "batches_in_flight"}))
            next_sample += args.sample_seconds
            if now - last_table >= 60:
                last_table = now
                print(" ".join(f"{samples[-1][h]:>17.1f}" if isinstance(samples[-1][h], float)
                               else f"{samples[-1][h]:>17}" for h in fields), flush=True)
            if now - t0 >= args.seconds:
                break
        batch = next(loader)
        loss = F.cross_entropy(model(batch["input_ids"]).flatten(0, 1), batch["labels"].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        loader.on_step(step, model, opt, reference_batches=refs)
        if step % args.state_every == 0:
            loader.state_dict()
    final = loader.selection_stats()
    loader.close()

    with open(os.path.join(args.out, "samples.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(samples)
    after = [x for x in samples if x["seconds"] >= args.warmup * args.seconds]
    k = max(1, len(after) // 10)
    first, last = after[:k], after[-k:]
    rss_start = statistics.median(x["rss_mb"] for x in first)
    rss_end = statistics.median(x["rss_mb"] for x in last)
    growth = 100.0 * (rss_end - rss_start) / rss_start
    # A probe runs on a thread of its own while it is in flight: count the threads without it.
    steady = lambda xs: statistics.median(x["threads"] - x["probe_in_flight"] for x in xs)  # noqa: E731
    threads_growth = steady(last) - steady(first)
    buffers_growth = max(x["buffers_allocated"] for x in last) - max(x["buffers_allocated"] for x in first)
    # Depths: a bounded one stays within its bound after warm-up (it may still be filling up to it); one without a
    # bound (small counts that move with the probe/refresh phase) must not settle higher: queues_growth sums, over
    # those, how far the median of the last tenth exceeds the largest of the first tenth.
    over = {d: max(x[d] for x in after) for d in depths if bounds[d] is not None and max(x[d] for x in after) > bounds[d]}
    queues_growth = sum(max(0, statistics.median(x[d] for x in last) - max(x[d] for x in first))
                        for d in depths if bounds[d] is None)
    failures = final.refreshes_failed + final.probes.probes_failed + final.probes.probes_timed_out
    # A soak that published nothing (or failed on the way) did not exercise what it is for.
    ok = (growth < args.max_rss_growth and threads_growth == 0 and final.refreshes > 0 and failures == 0
          and not over and queues_growth == 0)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
        minutes = [x["seconds"] / 60 for x in samples]
        ax[0].plot(minutes, [x["rss_mb"] for x in samples], label="RSS")
        ax[0].plot(minutes, [x["heap_in_use_mb"] for x in samples], label="heap in use")
        ax[0].plot(minutes, [x["heap_free_mb"] for x in samples], label="heap free (resident or not)")
        ax[0].set_ylabel("MiB")
        ax[0].legend(fontsize=7, loc="lower right")
        ax[1].plot(minutes, [x["threads"] for x in samples])
        ax[1].set_ylabel("threads")
        for d in depths:
            ax[2].plot(minutes, [x[d] / (bounds[d] or max(1, max(y[d] for y in samples))) for x in samples], label=d)
        ax[2].set_ylabel("depth / bound")
        ax[2].legend(fontsize=7, loc="lower right")
        ax[2].set_xlabel("minutes")
        for a in ax:
            a.axvline(args.warmup * args.seconds / 60, color="grey", linestyle=":")
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "soak.png"))
    except ImportError:
        print("matplotlib not importable: no plot")
    heap = lambda xs: statistics.median(x["heap_in_use_mb"] for x in xs)  # noqa: E731
    print(f"after warm-up ({len(after)} samples): RSS {rss_start:.1f} -> {rss_end:.1f} MiB ({growth:+.2f}%), "
          f"heap in use {heap(first):.1f} -> {heap(last):.1f} MiB, "
          f"threads without the probe's {steady(first):g} -> {steady(last):g}, pooled buffers "
          f"{max(x['buffers_allocated'] for x in first)} -> {max(x['buffers_allocated'] for x in last)}; "
          f"{step} steps, {final.probes.probes_completed} probes, {final.refreshes} refreshes published, "
          f"{final.refreshes_gated} gated, {final.refreshes_failed} failed, {final.probes.probes_failed} probes failed, "
          + (f"{final.heap_releases} heap releases ({final.heap_release_seconds:.2f} s, every "
             f"{selection.heap_release_interval_seconds:g} s at most); " if selection.heap_release_interval_seconds > 0
             else "heap releases off; ")
          + f"samples in {args.out}", flush=True)
    print("depths after warm-up (max of the first tenth -> of the last tenth; overall max / bound): " + ", ".join(
        f"{d} {max(x[d] for x in first)} -> {max(x[d] for x in last)} ({max(x[d] for x in after)} / "
        f"{bounds[d] if bounds[d] is not None else '-'})" for d in depths) + (f"; OVER BOUND: {over}" if over else ""),
        flush=True)
    print(f"RESULT soak_minutes={args.seconds / 60:.1f} rss_growth_pct={growth:.2f} threads_growth={threads_growth:g} "
          f"buffers_growth={buffers_growth} queues_growth={queues_growth:g} steps={step} "
          f"probes={final.probes.probes_completed} refreshes={final.refreshes} "
          f"failures={failures} ok={int(ok)}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
