"""The Python examples run from any directory, train on labels, print the held-out loss (and the
selection stats), switch selection off, and write their checkpoint where they are told."""
import os
import re
import subprocess
import sys

import pytest
import torch

import groupmates
from conftest import REPO

EXAMPLES = os.path.join(REPO, "examples")


def run(script, corpus, cwd, *args):
    cmd = [sys.executable, os.path.join(EXAMPLES, script), "--corpus", corpus, "--steps", "4", "--batch", "4",
           "--seq-len", "32", "--eval-every", "2", "--device", "cpu", *args]
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def final_heldout(out):
    m = re.search(r"final held-out loss (\d+\.\d+) after 4 steps", out)
    assert m, out
    return float(m.group(1))


def test_baseline_from_another_directory_with_default_checkpoint_dir(corpus, tmp_path):
    out = run("train_gpt_baseline.py", corpus, str(tmp_path))
    assert 0 < final_heldout(out) < 20
    assert re.search(r"step 2: loss \d+\.\d+ held-out \d+\.\d+", out)
    saved = torch.load(str(tmp_path / "checkpoints" / "train_gpt_baseline.pt"))
    assert "model" in saved and "opt" in saved


def test_groupmates_example_with_selection_off_and_on(corpus, tmp_path):
    ckpt = tmp_path / "my checkpoints"
    out = run("train_gpt.py", corpus, str(tmp_path), "--selection", "none", "--checkpoint-dir", str(ckpt))
    assert 0 < final_heldout(out) < 20
    assert "selection off: trained on 16 of 16 rows streamed" in out
    assert re.search(r"metrics at step 2: loader/batches=2,", out), out
    saved = torch.load(str(ckpt / "train_gpt.pt"))
    assert saved["data"]["batches"] == 4
    if not groupmates.engine_available():
        pytest.skip(f"groupmates._engine did not import: {groupmates.engine_error()}")
    out = run("train_gpt.py", corpus, str(tmp_path), "--selection", "group")
    assert 0 < final_heldout(out) < 20
    m = re.search(r"selection: 16 of (\d+) candidates", out)
    assert m and int(m.group(1)) >= 32, out
    assert "selected share per cluster:" in out and "probes:" in out
    assert re.search(r"metrics at step 4: .*selection/selected_share=[0-9.]+,", out), out
    assert (tmp_path / "checkpoints" / "train_gpt.pt").exists()
