"""src/distributed/ over a real Gloo group: 2 and 4 processes started by `python -m groupmates.launch`
(torchrun's environment), torch.distributed's ProcessGroup passed into the C++ collectives; every
rank checks what it received against values it recomputes from the printed seed. A rank that dies
or hangs makes the others fail with DistributedError within the timeout."""
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import ENGINE_BUILD

RANK_SCRIPT = r"""
import hashlib, io, json, os, random, sys, time
import torch, torch.distributed as dist
sys.path.insert(0, os.path.join(sys.argv[1], "python"))
import groupmates, groupmates_testhooks as hooks
mode, seed, out = sys.argv[2], int(sys.argv[3]), sys.argv[4]
dist.init_process_group("gloo")  # env://: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT from the launcher
rank, world = dist.get_rank(), dist.get_world_size()
coll = hooks.process_group_collectives(dist.group.WORLD, float(os.environ.get("GM_TIMEOUT", "20")))
assert (coll.rank, coll.world_size) == (rank, world)
report = {"rank": rank}

def payload(r):  # rank r's bytes: a length that differs by rank (0 included)
    g = random.Random(seed * 1000 + r)
    return bytes(g.randrange(256) for _ in range(g.choice([0, 1, 7, 4096, g.randrange(10000)])))

def rollout(i):  # rollout i of the probe, as whichever rank runs it would label it
    g = torch.Generator().manual_seed(seed + i)
    r = {"tokens": torch.randint(0, 50000, (3, 2, 8), generator=g), "labels": torch.randn(3, generator=g,
         dtype=torch.float64).tolist(), "kind": i % 4, "probe_step": 100}
    if i % 2:
        r["prior"] = torch.randn(3, 2, generator=g)
    return r

if mode == "ok":
    t0 = time.monotonic()
    assert coll.all_gather(payload(rank)) == [payload(r) for r in range(world)]
    root = seed % world
    assert coll.broadcast(payload(rank), root) == payload(root)
    # A probe of n rollouts split across the ranks; labels all-gathered in (rank, index) order.
    n = 4 * world + 3
    mine = [rollout(i) for i in hooks.rollouts_of_rank(n, rank, world)]
    got = coll.all_gather_rollouts(mine)
    order = [i for r in range(world) for i in hooks.rollouts_of_rank(n, r, world)]
    assert sorted(order) == list(range(n))
    for i, g in zip(order, got):
        want = rollout(i)
        assert torch.equal(g["tokens"], want["tokens"]) and g["labels"] == want["labels"] and g["kind"] == want["kind"]
        assert ("prior" in g) == ("prior" in want) and ("prior" not in g or torch.equal(g["prior"], want["prior"]))
    report["labels_hash"] = hashlib.sha256(b"".join(torch.tensor(g["labels"]).numpy().tobytes() for g in got)).hexdigest()
    # One model: rank 0 trains (here: a few seeded AdamW steps on the gathered labels) and broadcasts.
    model = torch.nn.Linear(8, 1, dtype=torch.float64)
    if rank == 0:
        torch.manual_seed(seed)
        model = torch.nn.Linear(8, 1, dtype=torch.float64)
        opt = torch.optim.AdamW(model.parameters(), lr=0.01)
        x = torch.stack([g["tokens"][:, 0, :].double().mean(0) / 50000 for g in got])
        y = torch.tensor([sum(g["labels"]) for g in got], dtype=torch.float64)
        for _ in range(5):
            opt.zero_grad(); torch.nn.functional.mse_loss(model(x).squeeze(1), y).backward(); opt.step()
    buf = io.BytesIO(); torch.save(model.state_dict(), buf)
    shared = coll.share_weights(buf.getvalue(), 0)
    report["model_hash"] = hashlib.sha256(shared).hexdigest()
    # Centroid update sums, all-reduced.
    def sums_of(r):
        g = torch.Generator().manual_seed(seed * 7 + r)
        return torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randint(0, 9, (5,), generator=g).double()
    s, c = sums_of(rank)
    coll.all_reduce_cluster_sums(s, c)
    want_s = sum(sums_of(r)[0] for r in range(world)); want_c = sum(sums_of(r)[1] for r in range(world))
    assert torch.allclose(s, want_s, rtol=0, atol=1e-12) and torch.equal(c, want_c)
    report["centroid_hash"] = hashlib.sha256(s.numpy().tobytes()).hexdigest()
    report["seconds"] = time.monotonic() - t0
elif mode in ("hang", "exit"):
    if rank == world - 1:  # the rank that fails: never joins the collective
        if mode == "exit":
            os._exit(0)
        time.sleep(float(os.environ["GM_TIMEOUT"]) * 2)
        sys.exit(0)
    t0 = time.monotonic()
    try:
        coll.all_gather(b"x")
        report["error"] = None
    except groupmates.DistributedError as e:
        report["error"] = str(e)
    report["seconds"] = time.monotonic() - t0
with open(out + "." + str(rank), "w") as f:
    json.dump(report, f)
"""


def launch(tmp_path, world, mode, seed, timeout_s=20):
    script = tmp_path / "dist_script.py"
    script.write_text(RANK_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["GM_TIMEOUT"] = str(timeout_s)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "groupmates.launch", "--nproc-per-node", str(world), "--timeout", "120",
                        str(script), ENGINE_BUILD, mode, str(seed), str(tmp_path / "out")],
                       env=env, capture_output=True, text=True, timeout=180)
    print(f"{world} processes, {mode}: {time.monotonic() - t0:.1f} s")
    assert p.returncode == 0, p.stderr[-4000:]
    return [json.loads((tmp_path / f"out.{r}").read_text()) for r in range(world)
            if (tmp_path / f"out.{r}").exists()]


@pytest.mark.parametrize("world", [2, 4])
def test_collectives_over_gloo_give_every_rank_the_same_labels_model_and_centroids(testhooks, tmp_path, world):
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed={seed}")
    reports = launch(tmp_path, world, "ok", seed)
    assert len(reports) == world
    for key in ("labels_hash", "model_hash", "centroid_hash"):
        assert len({r[key] for r in reports}) == 1, (seed, key, reports)
    print("collective seconds per rank:", [round(r["seconds"], 3) for r in reports])


@pytest.mark.parametrize("mode", ["hang", "exit"])
def test_a_rank_that_hangs_or_dies_is_an_error_on_the_others_within_the_timeout(testhooks, tmp_path, mode):
    timeout_s = 3
    reports = launch(tmp_path, 2, mode, 0, timeout_s=timeout_s)
    assert len(reports) == 1
    r = reports[0]
    assert r["error"] is not None and "groupmates [distributed] collective all_gather" in r["error"], r
    assert r["seconds"] < timeout_s + 5, r
