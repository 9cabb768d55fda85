"""Starts N processes of a script on this machine with torchrun's environment.

    python -m groupmates.launch --nproc-per-node 2 train.py --args ...

A stand-in for `torchrun --standalone --nproc-per-node N` where torchrun does not start (Debian's
torch 1.13 on Python 3.11 fails in torch/distributed/elastic before starting any worker). Each
process gets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT, so
`torch.distributed.init_process_group()` (init_method "env://") and groupmates pick them up. If one
process fails, the others are terminated (no rank waits forever for a dead peer) and its exit code
is returned; --timeout bounds the whole run. One node only: no rendezvous, no restarts.
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argv, nproc: int, timeout: float = 0, master_port: int = 0, python=sys.executable) -> int:
    """Runs `python argv...` nproc times; returns 0 if all succeed, else the first failure's code."""
    port = master_port or free_port()
    procs = []
    for rank in range(nproc):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc),
                   LOCAL_WORLD_SIZE=str(nproc), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([python] + list(argv), env=env))
    deadline = time.monotonic() + timeout if timeout > 0 else None
    code = 0
    try:
        while [p.poll() for p in procs].count(None) > 0:  # poll every process (any() would stop early)
            failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
            if failed:
                code = failed[0]
                break
            if deadline is not None and time.monotonic() > deadline:
                print(f"groupmates.launch: --timeout {timeout} s reached; stopping the ranks", file=sys.stderr)
                code = 124
                break
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    if code == 0:
        code = next((p.returncode for p in procs if p.returncode != 0), 0)
    return code


def main(args=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m groupmates.launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nproc-per-node", "--nproc_per_node", type=int, required=True, dest="nproc")
    parser.add_argument("--master-port", type=int, default=0, help="default: a free port")
    parser.add_argument("--timeout", type=float, default=0, help="seconds for the whole run; 0: none")
    parser.add_argument("script")
    parser.add_argument("script_args", nargs=argparse.REMAINDER)
    a = parser.parse_args(args)
    if a.nproc < 1:
        parser.error("--nproc-per-node must be >= 1")
    return launch([a.script] + a.script_args, a.nproc, a.timeout, a.master_port)


if __name__ == "__main__":
    sys.exit(main())
