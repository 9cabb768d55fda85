#!/usr/bin/env python3
"""bench-distributed: a selecting GroupMatesLoader on 1, 2 and 4 Gloo processes of this machine
(started by `python -m groupmates.launch`, torchrun's environment; the loader takes the initialised
default group), the same global batch, global window and probe plan in every run.

Each run trains a bigram model data-parallel (gradients all-reduced) for 24 steps with
Group-MATES selection (one cluster: the union check below needs no shared k-means), probes at
steps 2, 8 (every 6, the model passed until the save point, step 14), refreshes at the step (`at_step`, the only
mode on many ranks), no probe budget (every run pays for the same plan), then saves each rank's
state at step 14 and goes on 10 steps without probes. Measured per run:

  rollouts per rank per refresh   the probe's rollouts this rank ran (its share: i = rank mod world)
  labels per refresh              rollouts every rank holds after the all-gather
  bytes per refresh               bytes this rank sent and received in the exchanges (labels,
                                  weights broadcast, hashes), over refreshes
  probe seconds per rank          the probe thread's time on this rank (its rollouts)

and checked: the model hash equal on every rank at every step; the union of what the ranks emit
after the save point equal to what one process per rank window emits alone (restored from that
rank's state: the single-process reference of the README's "selection defined globally").

Last line: RESULT probe_rollouts_per_rank_4_vs_1=<x> model_hash_equal=<0|1> union_equals_reference=<0|1>
(x = rollouts per rank per refresh on 4 processes over 1; the split should give about 1/4).

    make bench-distributed      # BENCH_DISTRIBUTED_ARGS="--worlds 1,2" to change
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

RANK_SCRIPT = r"""
import json, os, sys, time
import torch, torch.distributed as dist, torch.nn as nn
import groupmates
path, seed, out, steps, save_at, cfg = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), \
    int(sys.argv[5]), json.loads(sys.argv[6])
dist.init_process_group("gloo")  # env://: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT from the launcher
rank, world = dist.get_rank(), dist.get_world_size()
torch.set_num_threads(1)
V, T = cfg["vocab"], cfg["seq_len"]
B = cfg["global_batch"] // world
selection = dict(cfg["selection"], window_size=cfg["global_window"] // world)
REFS = torch.arange(4 * T).remainder(2).view(4, T)

class Bigram(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.head = nn.Embedding(V, 32), nn.Linear(32, V)
    def forward(self, x):
        return self.head(self.emb(x))

torch.manual_seed(seed)  # data-parallel replicas: the same initial weights, gradients averaged
model = Bigram()
opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
l = groupmates.GroupMatesLoader(sources=[path], sequence_length=T, batch_size=B, epochs=0, vocab_size=V, seed=seed,
                                selection=selection, probes=dict(cfg["probes"]))
report = {"rank": rank, "steps": []}
t0 = time.monotonic()
for step in range(steps):
    b = next(l)
    loss = groupmates.next_token_loss(model, b["input_ids"])
    opt.zero_grad()
    loss.backward()
    for p in model.parameters():
        dist.all_reduce(p.grad)
        p.grad /= world
    opt.step()
    probe = step < save_at
    l.on_step(step, model if probe else None, opt if probe else None, reference_batches=REFS)
    s = l.selection_stats()
    report["steps"].append({"ids": [int(i) for i in b["ids"]], "model_hash": s.model_hash, "version": s.model_version,
                            "refreshes": s.refreshes, "shared": s.shared_rollouts, "kept": s.probes.rollouts_kept,
                            "bytes": s.shared_bytes})
    if step + 1 == save_at:
        report["state"] = l.state_dict()
report["seconds"] = time.monotonic() - t0
final = l.selection_stats()
report["probe_seconds"] = final.probes.probe_seconds
report["failed"] = final.refreshes_failed + final.probes.probes_failed + final.probes.probes_timed_out
l.close()
with open(out + "." + str(rank), "w") as f:
    json.dump(report, f)
"""

REFERENCE_SCRIPT = r"""
import json, sys
import groupmates
path, seed, state_file, rank, world, save_at, steps, cfg = sys.argv[1], int(sys.argv[2]), sys.argv[3], \
    int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), json.loads(sys.argv[8])
# One process alone (no group): rank `rank` of `world`'s windows, from that rank's saved state, no probes.
l = groupmates.GroupMatesLoader(sources=[path], sequence_length=cfg["seq_len"], batch_size=cfg["global_batch"] // world,
                                epochs=0, vocab_size=cfg["vocab"], seed=seed, rank=rank, world_size=world,
                                check_rank_environment=False, process_group=False,
                                selection=dict(cfg["selection"], window_size=cfg["global_window"] // world),
                                probes=dict(cfg["probes"]), state=json.load(open(state_file)))
out = []
for i in range(steps):
    b = next(l)
    l.on_step(save_at + i)
    out.append([int(i) for i in b["ids"]])
print(json.dumps(out))
"""


def env_without_ranks():
    """This process's environment without torchrun's rank variables (the launcher sets its own)."""
    return {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}


def topic_tokens(path, rows, seq_len, seed):
    """Token rows with structure: 4 topics (token ranges), one of them low-entropy."""
    rng = np.random.default_rng(seed)
    out = [t * 16 + rng.integers(0, 2 if t == 0 else 16, size=seq_len) for t in rng.integers(0, 4, size=rows)]
    np.concatenate(out).astype(np.uint16).tofile(path)


def run_world(tmp, world, data, seed, steps, save_at, cfg, timeout):
    script = os.path.join(tmp, "rank_script.py")
    with open(script, "w") as f:
        f.write(RANK_SCRIPT)
    out = os.path.join(tmp, f"out{world}")
    env = env_without_ranks()
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "groupmates.launch", "--nproc-per-node", str(world), "--timeout",
                        str(timeout), script, data, str(seed), out, str(steps), str(save_at), json.dumps(cfg)],
                       env=env, capture_output=True, text=True, timeout=timeout + 60)
    if p.returncode != 0:
        sys.exit(f"bench-distributed: {world} processes failed:\n{p.stderr[-4000:]}")
    reports = [json.load(open(f"{out}.{r}")) for r in range(world)]
    return reports, time.monotonic() - t0


def union_equals_reference(tmp, reports, world, data, seed, save_at, cfg):
    ref = os.path.join(tmp, "reference.py")
    with open(ref, "w") as f:
        f.write(REFERENCE_SCRIPT)
    n = len(reports[0]["steps"]) - save_at
    union, reference = set(), set()
    ok = True
    for r in reports:
        state_file = os.path.join(tmp, f"state{world}.{r['rank']}.json")
        with open(state_file, "w") as f:
            json.dump(r["state"], f)
        env = env_without_ranks()
        p = subprocess.run([sys.executable, ref, data, str(seed), state_file, str(r["rank"]), str(world), str(save_at),
                            str(n), json.dumps(cfg)], env=env, capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            sys.exit(f"bench-distributed: the reference of rank {r['rank']} of {world} failed:\n{p.stderr[-3000:]}")
        got = json.loads(p.stdout)
        want = [s["ids"] for s in r["steps"][save_at:]]
        ok &= got == want
        union |= {i for s in want for i in s}
        reference |= {i for s in got for i in s}
    return ok and union == reference


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worlds", default="1,2,4")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    worlds = [int(w) for w in args.worlds.split(",")]
    # Probes at steps 2 and 8 (the model is passed until the save point); the second is exchanged by step
    # 12, so a state saved after step 13 holds no probe share in flight and a single process can restore it.
    save_at = 14
    args.steps = save_at + 10
    cfg = {
        "vocab": 64, "seq_len": 32, "global_batch": 8, "global_window": 64,
        "selection": dict(mode="group", ratio=0.5, clusters=1, encoder_buckets=1024, encoder_dim=32,
                          refresh_train_steps=20, refresh_batch_rollouts=8, refresh_mode="at_step",
                          refresh_gate=False, seed=args.seed),
        "probes": dict(interval_steps=6, first_step=2, random_rollouts=16, neighbour_rollouts=8, pool_rows=32,
                       effect_delay_steps=3, budget=0.0, min_rollouts=2),
    }
    print(f"bench-distributed: worlds {worlds}, {args.steps} steps (save point {save_at}), global batch "
          f"{cfg['global_batch']} x {cfg['seq_len']}, global window {cfg['global_window']}, seed {args.seed}; "
          f"{os.cpu_count()} cores", flush=True)
    rows = {}
    hashes_equal = True
    union_ok = True
    refreshes_ok = True
    with tempfile.TemporaryDirectory(prefix="gm-bench-distributed-") as tmp:
        data = os.path.join(tmp, "topics.bin")
        topic_tokens(data, 4000, cfg["seq_len"], args.seed)
        for world in worlds:
            reports, wall = run_world(tmp, world, data, args.seed, args.steps, save_at, cfg, args.timeout)
            equal = all(len({r["steps"][i]["model_hash"] for r in reports}) == 1 for i in range(args.steps))
            hashes_equal &= equal
            last = [r["steps"][-1] for r in reports]
            refreshes = last[0]["refreshes"]
            failed = sum(r["failed"] for r in reports)
            refreshes_ok &= refreshes > 0 and failed == 0 and len({s["refreshes"] for s in last}) == 1
            emitted = [i for r in reports for s in r["steps"] for i in s["ids"]]
            disjoint = len(emitted) == len(set(emitted))
            union = union_equals_reference(tmp, reports, world, data, args.seed, save_at, cfg)
            union_ok &= union and disjoint
            rows[world] = dict(
                refreshes=refreshes,
                rollouts_per_rank=float(np.mean([s["kept"] for s in last])) / max(refreshes, 1),
                labels=(last[0]["shared"] if world > 1 else last[0]["kept"]) / max(refreshes, 1),  # 1: no exchange
                bytes=float(np.mean([s["bytes"] for s in last])) / max(refreshes, 1),
                probe_seconds=float(np.mean([r["probe_seconds"] for r in reports])),
                train_seconds=float(np.mean([r["seconds"] for r in reports])),
                wall=wall, equal=equal, union=union, disjoint=disjoint)
            w = rows[world]
            print(f"{world} processes: {refreshes} refreshes; per refresh {w['rollouts_per_rank']:.1f} rollouts per rank, "
                  f"{w['labels']:.1f} labels, {w['bytes'] / 1e3:.1f} kB moved per rank; probe {w['probe_seconds']:.2f} s "
                  f"per rank, training loop {w['train_seconds']:.1f} s ({w['wall']:.1f} s with start-up); model hash equal "
                  f"{int(equal)}, streams disjoint {int(disjoint)}, union = reference {int(union)}, probes or refreshes "
                  f"failed {failed}", flush=True)
    print()
    print(f"{'processes':>9} {'refreshes':>9} {'rollouts/rank/refresh':>22} {'labels/refresh':>15} "
          f"{'kB/rank/refresh':>16} {'probe s/rank':>13} {'loop s':>7}")
    for world, w in rows.items():
        print(f"{world:>9} {w['refreshes']:>9} {w['rollouts_per_rank']:>22.2f} {w['labels']:>15.1f} "
              f"{w['bytes'] / 1e3:>16.1f} {w['probe_seconds']:>13.2f} {w['train_seconds']:>7.1f}")
    same_plan = len({w["refreshes"] for w in rows.values()}) == 1 and len({w["labels"] for w in rows.values()}) == 1
    if not (refreshes_ok and same_plan):
        print("bench-distributed: a run published no refresh, had a failure, or ran another plan than the others")
    both = 1 in rows and 4 in rows and rows[1]["rollouts_per_rank"] > 0
    x = rows[4]["rollouts_per_rank"] / rows[1]["rollouts_per_rank"] if both else float("nan")  # nan: not both run
    print(f"RESULT probe_rollouts_per_rank_4_vs_1={x:.3f} model_hash_equal={int(hashes_equal)} "
          f"union_equals_reference={int(union_ok)}", flush=True)
    return 0 if hashes_equal and union_ok and refreshes_ok and same_plan and (not both or x <= 0.3) else 1


if __name__ == "__main__":
    sys.exit(main())
