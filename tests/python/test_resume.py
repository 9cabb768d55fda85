"""Resume that survives moved data and a changed batch size; lazy threads; cache stats.

* A state_dict() restores on the data copied to another directory, and on shards renamed so that
  they sort in another order (files are matched by content, read in the saved order); a file
  changed under the state is a StateError naming it.
* Another batch size on resume (batch-size ramp-up) continues at the same sample: the stream
  before and after the changes equals the uninterrupted stream of samples (batch size 1), in plain
  mode and in a selection mode.
* No thread starts before the first batch; state_dict() works before it.
* LoaderStats counts the line-index cache and the zstd frame cache; the local shuffle (shuffle_block)
  reads a frame about once where the global shuffle misses on most documents, and resumes exactly.
Seeds are printed (GM_TEST_SEED=... replays one)."""
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

import groupmates
from test_training_batches import fresh_seed

T = 16


def write_shards(d, rng, n):
    os.makedirs(d, exist_ok=True)
    for k in range(n):
        rng.integers(0, 1000, size=T * int(rng.integers(20, 60)) + int(rng.integers(0, T))).astype(np.uint16).tofile(
            os.path.join(d, f"shard-{k}.bin"))


def loader_of(d, batch_size, seed, state=None, **kw):
    return groupmates.GroupMatesLoader(sources=[{"paths": [d], "format": "token_file", "dtype": "uint16"}],
                                       sequence_length=T, batch_size=batch_size, seed=seed, state=state, **kw)


def ids(loader, batches=None):
    out = []
    for i, b in enumerate(loader):
        out.extend(b["ids"].tolist())
        if batches is not None and i + 1 == batches:
            break
    return out


def worker_threads():
    return len(os.listdir(f"/proc/{os.getpid()}/task"))


def test_moved_and_renamed_data_resumes_exactly_and_a_changed_file_is_named(tmp_path):
    seed = fresh_seed()
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 7))
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    write_shards(a, rng, n)
    B = int(rng.integers(2, 6))
    whole = ids(loader_of(a, B, seed))
    k = int(rng.integers(1, len(whole) // B - 1))
    first = loader_of(a, B, seed)
    head = ids(first, k)
    state = first.state_dict()
    first.close()
    assert head == whole[: k * B]
    # Moved to another directory and renamed so that the names sort in reverse.
    os.makedirs(b)
    for i in range(n):
        shutil.move(os.path.join(a, f"shard-{i}.bin"), os.path.join(b, f"x{1000 - i}.bin"))
    shutil.rmtree(a)
    assert ids(loader_of(b, B, seed, state=state)) == whole[k * B:]
    # One token changed (same size) in the file that was shard-v: named, with its old path.
    v = int(rng.integers(0, n))
    path = os.path.join(b, f"x{1000 - v}.bin")
    data = np.fromfile(path, dtype=np.uint16)
    data[0] ^= 1
    data.tofile(path)
    with pytest.raises(groupmates.StateError) as e:
        loader_of(b, B, seed, state=state)
    assert path in str(e.value) and "same size but other content" in str(e.value)
    assert os.path.join(a, f"shard-{v}.bin") in str(e.value)


def ramp(make, reference, rng, stages):
    """Runs `make(batch_size, state)` loaders over random batch sizes; returns the concatenated ids and
    the batch size of the stage in which the stream ended (its final partial batch is the only drop;
    a stage asked for more batches than were left ends the stream early, and later stages get none)."""
    got, state, ended = [], None, None
    for stage in range(stages):
        B = int(rng.integers(1, 9))
        loader = make(B, state)
        batches = None if stage + 1 == stages else int(rng.integers(1, 8))
        stage_ids = ids(loader, batches)
        got.extend(stage_ids)
        state = loader.state_dict()
        loader.close()
        if ended is None and (batches is None or len(stage_ids) < batches * B):
            ended = B
        elif ended is not None:
            assert stage_ids == [], "a stage after the end of the stream emitted rows"
    assert got == reference[: len(got)], "a sample repeated or skipped"
    return got, ended


def test_changed_batch_size_continues_at_the_same_sample_plain(tmp_path):
    seed = fresh_seed()
    rng = np.random.default_rng(seed)
    write_shards(str(tmp_path), rng, 3)
    reference = ids(loader_of(str(tmp_path), 1, seed))
    got, last = ramp(lambda B, s: loader_of(str(tmp_path), B, seed, state=s), reference, rng, int(rng.integers(2, 6)))
    assert len(reference) - len(got) < last  # only the final partial batch is dropped


def test_changed_batch_size_continues_at_the_same_row_when_selecting(tmp_path):
    if not groupmates.engine_available():
        pytest.skip(f"groupmates._engine did not import: {groupmates.engine_error()}")
    seed = fresh_seed()
    rng = np.random.default_rng(seed)
    write_shards(str(tmp_path), rng, 3)
    selection = {"mode": "random", "window_size": 16, "ratio": 0.5}

    def make(B, state):
        return loader_of(str(tmp_path), B, seed, state=state, selection=selection)

    reference = ids(make(1, None))
    got, last = ramp(make, reference, rng, int(rng.integers(2, 5)))
    assert len(reference) - len(got) < last


def test_no_thread_before_the_first_batch(token_file):
    seed = fresh_seed()
    before = worker_threads()
    loader = groupmates.GroupMatesLoader(sources=[token_file], sequence_length=T, batch_size=4, seed=seed,
                                         epochs=0, num_threads=3)
    assert worker_threads() == before, "construction started threads"
    state = loader.state_dict()  # works before the first batch, still no thread
    assert worker_threads() == before
    it = iter(loader)
    first = next(it)
    assert worker_threads() >= before + 4  # planner + 3 pool threads
    del it
    assert worker_threads() == before
    again = groupmates.GroupMatesLoader(sources=[token_file], sequence_length=T, batch_size=4, seed=seed, epochs=0,
                                        state=state)
    assert worker_threads() == before
    assert torch.equal(next(iter(again))["input_ids"], first["input_ids"])
    loader.close()
    again.close()
    # A bad state is still refused at construction.
    with pytest.raises(groupmates.StateError):
        groupmates.GroupMatesLoader(sources=[token_file], sequence_length=T + 1, batch_size=4, seed=seed, state=state)


def test_pin_memory_without_cuda_is_a_warned_no_op(token_file):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.warns(UserWarning, match="pin_memory=True but CUDA is not available"):
        loader = groupmates.GroupMatesLoader(sources=[token_file], sequence_length=T, batch_size=4, pin_memory=True)
    b = next(iter(loader))
    assert not b["input_ids"].is_pinned()
    loader.close()


def test_cache_stats_count_line_index_and_zstd_frames(corpus, tmp_path):
    seed = fresh_seed()
    rng = np.random.default_rng(seed)
    lines = open(os.path.join(corpus, "austen.jsonl")).read().splitlines()
    n = int(rng.integers(2, 5))
    for k in range(n):
        with open(tmp_path / f"part-{k}.jsonl", "w") as f:
            f.write("\n".join(lines[k * 20:(k + 1) * 20]) + "\n")
        subprocess.run(["zstd", "-q", "--rm", str(tmp_path / f"part-{k}.jsonl")], check=True)
    src = {"paths": [str(tmp_path)], "format": "jsonl", "tokenizer_model": os.path.join(corpus, "austen.model")}

    def run():
        loader = groupmates.GroupMatesLoader(sources=[src], sequence_length=64, batch_size=4, seed=seed)
        rows = sum(b["input_ids"].shape[0] for b in loader)
        s = loader.stats()
        loader.close()
        return rows, s

    rows, s = run()
    assert (s.line_index_cache_hits, s.line_index_cache_misses) == (0, n)  # first open: built and cached
    assert s.zstd_frame_cache_hits + s.zstd_frame_cache_misses >= 20 * n  # every document read once at least
    assert 1 <= s.zstd_frame_cache_misses  # one frame per file: later reads hit
    assert s.zstd_frame_cache_hits > 0
    assert 0 < s.metrics()["loader/zstd_frame_cache_hit_rate"] <= 1
    rows2, s2 = run()
    assert rows2 == rows and (s2.line_index_cache_hits, s2.line_index_cache_misses) == (n, 0)


def test_local_shuffle_reads_frames_once_covers_the_pass_and_resumes(corpus, tmp_path):
    # One .jsonl.zst file of 10-line zstd frames (concatenated frames are one valid file), a frame
    # cache holding a few of them: the global shuffle misses on most documents, the local shuffle
    # (blocks of one frame's documents, 2 blocks per span) on about one in ten; the default ("auto")
    # chooses blocks of one frame's documents by itself.
    seed = fresh_seed()
    lines = open(os.path.join(corpus, "austen.jsonl")).read().splitlines()[:200]
    frames = []
    for k in range(0, len(lines), 10):
        part = tmp_path / f"frame-{k}.jsonl"
        part.write_text("\n".join(lines[k:k + 10]) + "\n")
        frames.append(subprocess.run(["zstd", "-q", "-c", str(part)], check=True, capture_output=True).stdout)
        part.unlink()
    (tmp_path / "data.jsonl.zst").write_bytes(b"".join(frames))
    src = {"paths": [str(tmp_path / "data.jsonl.zst")], "format": "jsonl", "zstd_cache_bytes": 4 * 40000,
           "tokenizer_model": os.path.join(corpus, "austen.model")}

    def make(**kw):
        # One worker: no two threads decompress one frame at once, so the cache counts are the order's alone.
        return groupmates.GroupMatesLoader(sources=[src], sequence_length=64, batch_size=4, seed=seed, num_threads=1,
                                           **kw)

    def run(loader, n=None):
        out = []
        for b in loader:
            out.append(b["input_ids"].clone())
            if n is not None and len(out) == n:
                break
        return out

    glob_loader, local_loader, auto_loader = make(shuffle_block=0), make(shuffle_block=10, shuffle_span=2), make()
    glob, local, auto = run(glob_loader), run(local_loader), run(auto_loader)
    g, l, a = glob_loader.stats(), local_loader.stats(), auto_loader.stats()
    for x in (glob_loader, local_loader, auto_loader):
        x.close()
    rate = lambda s: s.zstd_frame_cache_hits / (s.zstd_frame_cache_hits + s.zstd_frame_cache_misses)  # noqa: E731
    print(f"seed {seed}: frame cache hit rate global {rate(g):.2f} local {rate(l):.2f} auto {rate(a):.2f}")
    assert rate(l) > 0.8 and rate(a) > 0.8 and rate(g) < 0.5  # blocks aligned with the frames: each read about once
    assert len(auto) == len(glob) and not all(torch.equal(x, y) for x, y in zip(auto, glob))
    with pytest.raises(groupmates.ConfigError, match="shuffle_block"):
        make(shuffle_block="local")
    # The same pass (the same documents: as many full windows), in another order.
    assert len(local) == len(glob) and not all(torch.equal(a, b) for a, b in zip(local, glob))
    k = len(local) // 3
    first = make(shuffle_block=10, shuffle_span=2)
    got = run(first, k)
    state = first.state_dict()
    first.close()
    second = make(shuffle_block=10, shuffle_span=2, state=state)
    got += run(second)
    second.close()
    assert len(got) == len(local) and all(torch.equal(a, b) for a, b in zip(got, local))
    with pytest.raises(groupmates.StateError):
        make(shuffle_block=0, state=state)  # saved under the local shuffle, restored under the global one
