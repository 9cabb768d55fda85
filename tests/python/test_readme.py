"""The python blocks of python/README.md run as written, from a directory holding data/corpus (a
link to the test corpus), and do what their comments say."""
import os
import re
import subprocess
import sys

import pytest

import groupmates
from conftest import REPO


def python_blocks():
    with open(os.path.join(REPO, "python", "README.md")) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def run_block(code, corpus, cwd):
    os.makedirs(os.path.join(cwd, "data"), exist_ok=True)
    os.symlink(os.path.abspath(corpus), os.path.join(cwd, "data", "corpus"))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_the_readme_has_the_quick_start_and_the_selection_blocks():
    blocks = python_blocks()
    assert len(blocks) == 2
    assert "labels=True" in blocks[0] and 'batch["labels"]' in blocks[0] and "[:, 1:]" not in blocks[0]
    assert "selection=" in blocks[1]


def test_quick_start_trains_checkpoints_and_resumes(corpus, tmp_path):
    r = run_block(python_blocks()[0], corpus, str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert re.search(r"step 60: loss \d+\.\d+", r.stdout), r.stdout
    # the checkpoint of step 60 is after 61 batches; skip(2) passes batches 61 and 62
    assert "resumed at global batch 63" in r.stdout, r.stdout
    assert (tmp_path / "ckpt.pt").exists()


def test_selection_block_selects_and_probes(corpus, tmp_path):
    if not groupmates.engine_available():
        pytest.skip(f"groupmates._engine did not import: {groupmates.engine_error()}")
    r = run_block(python_blocks()[1], corpus, str(tmp_path))
    assert r.returncode == 0, r.stderr
    m = re.search(r"held-out loss (\d+\.\d+); selected (\d+) of (\d+) \((\d+) replays\); probes completed (\d+)",
                  r.stdout)
    assert m, r.stdout
    selected, seen, replayed = int(m.group(2)), int(m.group(3)), int(m.group(4))
    # ratio 0.5 of the windows; with the default replay ("auto": 0.5 in group mode) about half the rows are replays
    assert selected == 121 * 8 and 0.4 * selected < replayed <= 0.5 * selected
    assert seen >= 2 * (selected - replayed) - 64
    assert int(m.group(5)) >= 1
    assert (tmp_path / "ckpt.pt").exists()


def test_the_readme_diff_of_the_two_examples_is_current(tmp_path):
    # the diff python/README.md shows is GNU diff -u of the code below the docstrings
    for name in ("train_gpt_baseline.py", "train_gpt.py"):
        lines = open(os.path.join(REPO, "examples", name)).read().splitlines(keepends=True)
        (tmp_path / name).write_text("".join(lines[next(i for i, x in enumerate(lines) if x.startswith("import")):]))
    r = subprocess.run(["diff", "-u", "train_gpt_baseline.py", "train_gpt.py"], cwd=str(tmp_path),
                       capture_output=True, text=True)
    diff = r.stdout.split("\n", 2)[2]  # without the two file header lines
    with open(os.path.join(REPO, "python", "README.md")) as f:
        readme = f.read()
    block = re.search(r"differs in (\d+) lines:\n\n```diff\n(.*?)```", readme, flags=re.S)
    assert block and block.group(2) == diff, "regenerate the diff in python/README.md"
    assert int(block.group(1)) == sum(1 for line in diff.splitlines() if line[:1] in "+-")
