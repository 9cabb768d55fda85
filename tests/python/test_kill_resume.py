"""Kill -9 resume, the short run of tests/examples/kill_resume.py (`make kill-resume` is the long one):
the examples' GPT trained by GroupMatesLoader in plain and Group-MATES mode, SIGKILLed 3 times per
mode at random moments and restarted from its last atomic checkpoint; every restarted process emits
the uninterrupted run's batches (and losses). And the check fails when a restart leaves the loader's
state out."""
import os
import re
import subprocess
import sys

import pytest

import groupmates
from conftest import REPO

SCRIPT = os.path.join(REPO, "tests", "examples", "kill_resume.py")


def run(corpus, *args):
    r = subprocess.run([sys.executable, SCRIPT, "--corpus", corpus, *args], capture_output=True, text=True,
                       timeout=600)
    result = re.search(r"^RESULT .*$", r.stdout, re.M)
    assert result, r.stdout + r.stderr
    fields = dict(kv.split("=") for kv in result.group(0).split()[1:])
    return r, {k: int(v) for k, v in fields.items()}


def test_killed_runs_resume_identical_in_plain_and_group_mode(corpus):
    if not groupmates.engine_available():
        pytest.fail(f"groupmates._engine did not import: {groupmates.engine_error()}")
    r, f = run(corpus, "--kills", "3", "--every", "3")
    print(r.stdout)  # the seed, for a replay with --seed
    assert r.returncode == 0, r.stdout + r.stderr
    assert f["kills"] == 6 and f["resumed_identical"] == 6, r.stdout
    assert f["plain_identical"] == 3 and f["group_identical"] == 3, r.stdout
    # the restarts resumed from checkpoints, not all from step 0
    assert f["plain_from_checkpoint"] >= 1 and f["group_from_checkpoint"] >= 1, r.stdout
    # Group-MATES really probed and refreshed across the restarts
    m = re.search(r"group: process 3 .*probes_completed=(\d+) refreshes=(\d+)", r.stdout)
    assert m and int(m.group(1)) >= 1, r.stdout


def test_the_check_fails_when_a_restart_forgets_the_loader_state(corpus):
    # (--break-resume optimizer fails too: the losses differ from the second step after a restart)
    r, f = run(corpus, "--kills", "3", "--every", "3", "--modes", "plain", "--break-resume", "loader")
    assert r.returncode == 1, r.stdout + r.stderr
    assert f["plain_from_checkpoint"] >= 1, r.stdout
    assert f["resumed_identical"] < f["kills"] and "DIFFERENT at steps" in r.stdout, r.stdout
