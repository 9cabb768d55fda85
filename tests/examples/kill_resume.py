#!/usr/bin/env python3
"""Kill -9 resume: the examples' GPT (examples/gpt_common.py) trained on the embedded corpus by a
groupmates.GroupMatesLoader, in plain mode and in Group-MATES mode (RefreshMode at_step, so the
stream is a function of the configs and the trainer alone), is SIGKILLed at random moments and
restarted from its last checkpoint each time; every batch a restarted process emits must equal the
uninterrupted run's batch of the same step.

A training process (forked from this one: it inherits the imports, nothing else; all it knows of
the earlier processes is the checkpoint file) writes one line per step to its own segment file:
step, a hash of the batch (input ids, labels, and in selection mode the model version, influence
and clusters), and the training loss (hexadecimal float: model and optimizer must resume too).
Every `--every` steps it saves model + optimizer + loader.state_dict() + step atomically: written to
ckpt.pt.tmp, fsync'ed, renamed over ckpt.pt, directory fsync'ed. A process only ever reads
ckpt.pt, so a checkpoint torn by a kill (a tmp file left behind, counted) is never read back.

Kill moments: after a restart from checkpoint step c, a step s drawn uniformly from
[c + every + 1, c + 2 * every] (at most steps - 1: so checkpoint c + every is whole before the kill and
every restart makes progress); once the process has logged step s, a delay drawn
uniformly from [0, 1.5 x the reference run's seconds per step], then SIGKILL: the kill lands in a
training step, a probe, a loader read or a checkpoint write. After each kill the checkpoint is
loaded here (it must be whole, at a multiple of `every`, and not older than the last one written
before s). The seed is printed; --seed replays the kill schedule.

    .venv/bin/python tests/examples/kill_resume.py --kills 20          # make kill-resume
    .venv/bin/python tests/examples/kill_resume.py --kills 3 --every 3  # the short run (tests/python)

Last line: RESULT kills=<k> resumed_identical=<i> plain_kills=.. plain_identical=.. group_kills=..
group_identical=.. (and per mode the restarts from a checkpoint after step 0, <mode>_from_checkpoint)
torn_checkpoints=<t> seed=<s>; exit code 0 only if i == k in both modes.
"""
import argparse
import hashlib
import os
import random
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "examples"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import groupmates  # noqa: E402
from gpt_common import GPT  # noqa: E402

MODES = ("plain", "group")


# ---- the training process -------------------------------------------------------------------------

def save_atomic(obj, path):
    """torch.save to path + '.tmp', fsync, rename over path, fsync the directory: a reader of `path`
    sees the old checkpoint or the new one, never a torn one."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def held_out_rows(tok, corpus, seq_len, rows=8):
    """The first `rows` windows of seq_len + 1 tokens of the held-out text (as examples/gpt_common.py)."""
    import json
    ids = []
    with open(os.path.join(corpus, "austen_heldout.jsonl")) as f:
        for line in f:
            ids += tok.encode(json.loads(line)["text"]) + [tok.eos_id]
            if len(ids) >= rows * (seq_len + 1):
                break
    return torch.tensor(ids[: rows * (seq_len + 1)], dtype=torch.int64).view(rows, seq_len + 1)


def make_loader(mode, args, tok, state):
    source = groupmates.SourceConfig(paths=[os.path.join(args.corpus, "austen.jsonl")], format="jsonl",
                                     tokenizer_model=os.path.join(args.corpus, "austen.model"))
    kw = dict(sources=[source], sequence_length=args.seq_len, labels=True, batch_size=args.batch,
              eos_id=tok.eos_id, vocab_size=tok.vocab_size, epochs=0, seed=args.data_seed, num_threads=2)
    if mode == "group":
        kw["selection"] = groupmates.SelectionConfig(
            mode="group", refresh_mode="at_step", window_size=4 * args.batch, clusters=4, encoder_buckets=1024,
            encoder_dim=16, encoder_bag_dim=32, refresh_train_steps=10, refresh_batch_rollouts=4,
            refresh_gate=False, seed=args.data_seed)  # gate off: every refresh publishes (a version switch)
        kw["probes"] = groupmates.ProbeConfig(interval_steps=args.every + 1, first_step=1, rollout_length=2,
                                              random_rollouts=2, neighbour_rollouts=2, bootstrap_pairs=1,
                                              pool_rows=4 * args.batch, effect_delay_steps=2, budget=0)
    return groupmates.GroupMatesLoader(**kw, state=state)


def batch_hash(batch):
    h = hashlib.sha256()
    for key in ("input_ids", "labels", "influence", "cluster"):
        if key in batch:
            h.update(key.encode())
            h.update(batch[key].contiguous().numpy().tobytes())
    h.update(str(batch.get("model_version", "")).encode())
    return h.hexdigest()[:20]


def train_process(mode, args, run_dir, segment):
    """One training process: resumes from run_dir/ckpt.pt if there is one, trains to args.steps,
    logging each step to `segment`. Never returns (os._exit)."""
    code = 1
    try:
        torch.set_num_threads(1)
        ckpt = os.path.join(run_dir, "ckpt.pt")
        saved = torch.load(ckpt) if os.path.exists(ckpt) else None
        tok = groupmates.Tokenizer(os.path.join(args.corpus, "austen.model"))
        torch.manual_seed(0)
        model = GPT(tok.vocab_size, dim=32, layers=1, heads=2, seq_len=args.seq_len)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        step = 0
        if saved is not None:
            model.load_state_dict(saved["model"])
            if args.break_resume != "optimizer":
                opt.load_state_dict(saved["opt"])
            step = saved["step"]
        resume_data = saved is not None and args.break_resume != "loader"
        loader = make_loader(mode, args, tok, saved["data"] if resume_data else None)
        refs = held_out_rows(tok, args.corpus, args.seq_len)
        if mode == "group":
            loader.set_reference(refs)
        with open(segment, "a") as log:
            log.write(f"# start {step}\n")
            log.flush()
            while step < args.steps:
                batch = next(loader)
                step += 1
                loss = F.cross_entropy(model(batch["input_ids"]).flatten(0, 1), batch["labels"].flatten())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if mode == "group":
                    loader.on_step(step, model, opt, reference_batches=refs)
                log.write(f"{step} {batch_hash(batch)} {loss.item().hex()} {time.time():.4f}\n")
                log.flush()
                if step % args.every == 0:
                    save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "data": loader.state_dict(),
                                 "step": step}, ckpt)
            if mode == "group":
                s = loader.selection_stats()
                log.write(f"# stats probes_completed={s['probes']['probes_completed']} refreshes={s['refreshes']} "
                          f"model_version={s['model_version']} probes_failed={s['probes']['probes_failed']} "
                          f"replayed={s['replayed']}\n")
            log.write("# done\n")
        loader.close()
        code = 0
    except BaseException:  # noqa: BLE001 - reported by the parent from the child's stderr
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def start(mode, args, run_dir, segment):
    """Forks a training process; its stdout/stderr go to segment + '.out'. Returns its pid."""
    out = os.open(segment + ".out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.dup2(out, 1)
        os.dup2(out, 2)
        train_process(mode, args, run_dir, segment)
    os.close(out)
    return pid


# ---- the parent ------------------------------------------------------------------------------------

def read_segment(path):
    """(start step, {step: (hash, loss)}, comment lines) of a segment file; a torn last line is ignored."""
    start_step, lines, notes, times = None, {}, [], []
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                break
            if line.startswith("# start "):
                start_step = int(line.split()[2])
            elif line.startswith("#"):
                notes.append(line[2:].strip())
            else:
                s, h, loss, when = line.split()
                lines[int(s)] = (h, loss)
                times.append(float(when))
    return start_step, lines, notes, times


def last_logged(path):
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    steps = [int(l.split()[0]) for l in text.split("\n")[:-1] if l and not l.startswith("#")]
    return steps[-1] if steps else None


def wait_exit(pid, what, segment, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                return
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    with open(segment + ".out") as f:
        raise SystemExit(f"{what} failed (pid {pid}):\n{f.read()[-4000:]}")


def run_mode(mode, args, rng, root):
    """The uninterrupted run, then the killed one; returns (kills, resumed_identical, torn)."""
    ref_dir = os.path.join(root, mode, "reference")
    os.makedirs(ref_dir)
    t0 = time.time()
    ref_seg = os.path.join(ref_dir, "segment-0.txt")
    wait_exit(start(mode, args, ref_dir, ref_seg), f"{mode}: the uninterrupted run", ref_seg, args.timeout)
    _, reference, notes, times = read_segment(ref_seg)
    per_step = (times[-1] - times[0]) / (len(times) - 1)  # without the start-up
    if sorted(reference) != list(range(1, args.steps + 1)):
        raise SystemExit(f"{mode}: the uninterrupted run logged steps {sorted(reference)[:5]}...")
    print(f"{mode}: uninterrupted run of {args.steps} steps in {time.time() - t0:.1f} s "
          f"({per_step * 1000:.0f} ms/step after start-up) {' '.join(notes[:-1])}", flush=True)

    run_dir = os.path.join(root, mode, "killed")
    os.makedirs(run_dir)
    ckpt = os.path.join(run_dir, "ckpt.pt")
    kills = identical = torn = from_checkpoint = 0
    resumed_from = 0  # checkpoint step the current process started from
    for segment_index in range(args.kills + 1):
        seg = os.path.join(run_dir, f"segment-{segment_index}.txt")
        if os.path.exists(ckpt + ".tmp"):  # a kill tore a checkpoint write: it is never read
            torn += 1
            os.remove(ckpt + ".tmp")
        pid = start(mode, args, run_dir, seg)
        if segment_index == args.kills:  # the last process runs to the end
            wait_exit(pid, f"{mode}: the last process", seg, args.timeout)
        else:
            # From c + every + 1 on, checkpoint c + every is whole before the kill: every restart makes progress
            # (from c + every, three kills in a row could all tear the first write and restart from 0).
            high = min(resumed_from + 2 * args.every, args.steps - 1)
            target = rng.randint(min(resumed_from + args.every + 1, high), high)
            delay = rng.uniform(0, 1.5 * per_step)
            deadline = time.time() + args.timeout
            while (last_logged(seg) or 0) < target:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    with open(seg + ".out") as f:
                        raise SystemExit(f"{mode}: process {segment_index} exited before its kill:\n{f.read()[-4000:]}")
                if time.time() > deadline:
                    raise SystemExit(f"{mode}: process {segment_index} never reached step {target}")
                time.sleep(0.002)
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            kills += 1
        start_step, lines, notes, _ = read_segment(seg)
        # It restarted from its last checkpoint, and emitted exactly the uninterrupted run's batches.
        ok = start_step == resumed_from and lines and min(lines) == resumed_from + 1 and \
            all(reference.get(s) == v for s, v in lines.items())
        wrong = [s for s, v in sorted(lines.items()) if reference.get(s) != v]
        if segment_index > 0:
            identical += bool(ok)
        status = "identical" if ok else f"DIFFERENT at steps {wrong[:5]} (start {start_step}, expected {resumed_from})"
        if segment_index < args.kills:
            saved = torch.load(ckpt) if os.path.exists(ckpt) else {"step": 0}
            last = max(lines) if lines else resumed_from
            newest = last // args.every * args.every  # the newest checkpoint begun before the kill
            # Checkpoint `newest` was complete before step newest + 1 was logged; a kill right after logging
            # step `newest` may tear its write (the one before it stays).
            allowed = {newest} if last % args.every else {newest, newest - args.every}
            if saved["step"] not in allowed or saved["step"] < resumed_from:
                raise SystemExit(f"{mode}: checkpoint of step {saved['step']} after a kill at step {last}")
            print(f"{mode}: process {segment_index} from step {resumed_from}: steps {min(lines)}-{last} {status}; "
                  f"SIGKILL {delay * 1000:.0f} ms after step {target}; checkpoint at step {saved['step']}", flush=True)
            resumed_from = saved["step"]
            from_checkpoint += resumed_from > 0
        else:
            print(f"{mode}: process {segment_index} from step {resumed_from}: steps {min(lines)}-{max(lines)} "
                  f"{status} {' '.join(notes[:-1])}", flush=True)
            if max(lines) != args.steps:
                raise SystemExit(f"{mode}: the last process ended at step {max(lines)}")
    return kills, identical, torn, from_checkpoint


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs per mode")
    ap.add_argument("--every", type=int, default=5, help="checkpoint every N steps")
    ap.add_argument("--steps", type=int, default=0, help="training steps (default every x (kills + 3))")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--seed", type=int, default=None, help="kill schedule seed (default: fresh, printed)")
    ap.add_argument("--corpus", default=os.environ.get("GROUPMATES_CORPUS", os.path.join(REPO, "data", "corpus")))
    ap.add_argument("--workdir", default=None, help="checkpoints and segment logs (default: a fresh temp dir)")
    ap.add_argument("--seq-len", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--data-seed", type=int, default=7)
    ap.add_argument("--break-resume", choices=["none", "loader", "optimizer"], default="none",
                    help="a planted bug, to see this check fail: a restart leaves the loader's or the optimizer's "
                         "state out of what it restores")
    ap.add_argument("--timeout", type=float, default=300, help="seconds a process may take before it is failed")
    args = ap.parse_args()
    if args.every < 2 or args.kills < 0:
        ap.error("--every must be >= 2 and --kills >= 0")
    args.steps = args.steps or args.every * (2 * args.kills + 3)
    if args.steps < args.every * (2 * args.kills + 1) + 1:
        ap.error("--steps must be > every x (2 x kills + 1): each process is killed within 2 x every steps")
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    print(f"kill_resume: seed {seed} (replay with --seed {seed}), {args.kills} kills per mode, "
          f"checkpoint every {args.every} of {args.steps} steps", flush=True)
    import tempfile
    root = args.workdir or tempfile.mkdtemp(prefix="gm-kill-resume-")
    os.makedirs(root, exist_ok=True)
    rng = random.Random(seed)
    totals, parts = [0, 0, 0, 0], []
    for mode in args.modes.split(","):
        if mode not in MODES:
            ap.error(f"--modes: unknown mode {mode!r} (expected {', '.join(MODES)})")
        counts = run_mode(mode, args, rng, root)
        totals = [a + b for a, b in zip(totals, counts)]
        parts.append(f"{mode}_kills={counts[0]} {mode}_identical={counts[1]} {mode}_from_checkpoint={counts[3]}")
    print(f"RESULT kills={totals[0]} resumed_identical={totals[1]} {' '.join(parts)} torn_checkpoints={totals[2]} "
          f"seed={seed}", flush=True)
    if args.workdir is None:
        import shutil
        shutil.rmtree(root, ignore_errors=True)
    return 0 if totals[0] == totals[1] else 1


if __name__ == "__main__":
    sys.exit(main())
