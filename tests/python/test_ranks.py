"""Rank and world size from an initialised torch.distributed group or torchrun's environment
(groupmates/ranks.py, include/groupmates/rank_environment.h), with processes started the way users
start them: `python -m groupmates.launch` (torchrun's environment) and an initialised Gloo group."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch

import groupmates

from conftest import run_python

T, B = 64, 4

# One rank: its loader gets no rank=; writes what it resolved and the ids of every batch.
RANK_SCRIPT = """
import json, os, sys, torch, groupmates
mode, token_file, out, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if mode == "group":  # as under torch.multiprocessing.spawn: a group, and no torchrun variables
    rank, world = int(os.environ.pop("RANK")), int(os.environ.pop("WORLD_SIZE"))
    os.environ.pop("LOCAL_RANK")
    torch.distributed.init_process_group("gloo", init_method="tcp://127.0.0.1:" + os.environ["MASTER_PORT"],
                                         rank=rank, world_size=world)
loader = groupmates.GroupMatesLoader(sources=[token_file], sequence_length=64, batch_size=4, seed=seed)
ids = [b["ids"].tolist() for b in loader]
with open(out + "." + str(loader.config.rank), "w") as f:
    json.dump({"rank": loader.config.rank, "world_size": loader.config.world_size, "ids": ids}, f)
"""


def launch(tmp_path, world, *args, timeout=120):
    script = tmp_path / "rank_script.py"
    script.write_text(RANK_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "groupmates.launch", "--nproc-per-node", str(world), "--timeout",
                        str(timeout), str(script)] + [str(a) for a in args], env=env, capture_output=True, text=True,
                       timeout=timeout + 30)
    print(f"{world} processes: {time.monotonic() - t0:.1f} s")
    assert p.returncode == 0, p.stderr[-3000:]
    return p


@pytest.mark.parametrize("mode,world", [("env", 2), ("env", 4), ("group", 2)])
def test_ranks_without_rank_argument_read_disjoint_complete_streams(token_file, tmp_path, mode, world):
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed={seed}")
    out = tmp_path / "ids"
    launch(tmp_path, world, mode, token_file, out, seed)
    got = [json.loads((tmp_path / f"ids.{r}").read_text()) for r in range(world)]
    assert [(g["rank"], g["world_size"]) for g in got] == [(r, world) for r in range(world)]
    # Reference: one process reading the global batches (B * world rows each).
    ref = groupmates.GroupMatesLoader(sources=[token_file], sequence_length=T, batch_size=B * world, seed=seed,
                                      rank=0, world_size=1)
    ref_ids = [b["ids"].tolist() for b in ref]
    assert all(len(g["ids"]) == len(ref_ids) for g in got), seed
    for i, global_ids in enumerate(ref_ids):
        assert sum((g["ids"][i] for g in got), []) == global_ids, (seed, i)
    every = [x for g in got for batch in g["ids"] for x in batch]
    assert len(every) == len(set(every))  # one epoch: no row twice


def test_given_rank_that_disagrees_with_torchrun_environment_is_an_error(token_file, monkeypatch):
    def make(**kw):
        return groupmates.GroupMatesLoader(sources=[token_file], sequence_length=T, batch_size=B, **kw)

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert (make().config.rank, make().config.world_size) == (1, 2)
    with pytest.raises(groupmates.ConfigError, match=r"LoaderConfig.rank: is 0 but the environment says RANK=1"):
        make(rank=0)
    with pytest.raises(groupmates.ConfigError, match=r"LoaderConfig.world_size: is 1 but the environment says "
                                                     r"WORLD_SIZE=2"):
        make(rank=1, world_size=1)
    loader = make(rank=0, world_size=1, check_rank_environment=False)  # e.g. evaluation data, read whole
    assert (loader.config.rank, loader.config.world_size) == (0, 1)
    assert make(check_rank_environment=False).config.world_size == 1
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(groupmates.ConfigError, match=r"environment RANK: RANK='one' is not a non-negative integer"):
        make()
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(groupmates.ConfigError, match="set both or neither"):
        make()


def test_given_rank_that_disagrees_with_the_distributed_group_is_an_error(token_file):
    code = f"""
import socket, torch, groupmates
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{{port}}", rank=0, world_size=1)
make = lambda **kw: groupmates.GroupMatesLoader(sources=[{token_file!r}], sequence_length=64, batch_size=4, **kw)
assert (make().config.rank, make().config.world_size) == (0, 1)
try:
    make(world_size=2, rank=1)
except groupmates.ConfigError as e:
    print("ERROR", e)
print("UNCHECKED", make(world_size=2, rank=1, check_rank_environment=False).config.world_size)
"""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    p = run_python(code, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    assert "ERROR groupmates [invalid_config] LoaderConfig.rank: is 1 but the initialised torch.distributed group " \
           "says rank=0" in p.stdout or "LoaderConfig.world_size: is 2 but the initialised torch.distributed group " \
           "says world_size=1" in p.stdout, p.stdout
    assert "UNCHECKED 2" in p.stdout


def test_launch_stops_every_rank_when_one_fails(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text("import os, sys, time\nif os.environ['RANK'] == '1': sys.exit(3)\ntime.sleep(300)\n")
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "groupmates.launch", "--nproc-per-node", "3", str(script)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 3 and time.monotonic() - t0 < 30
