"""Fixtures of the groupmates Python suite (run by `make test-python`, part of `make test`)."""
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.environ.get("GROUPMATES_CORPUS", os.path.join(REPO, "data", "corpus"))


@pytest.fixture(scope="session")
def token_file(tmp_path_factory):
    """A flat uint16 token file of 100_003 tokens (a partial window at the end), values < 50257."""
    path = str(tmp_path_factory.mktemp("tokens") / "tokens_u16.bin")
    rng = np.random.default_rng(1234)
    rng.integers(0, 50257, size=100_003, dtype=np.uint16).tofile(path)
    return path


@pytest.fixture(scope="session")
def corpus():
    model = os.path.join(CORPUS, "austen.model")
    jsonl = os.path.join(CORPUS, "austen.jsonl")
    if not (os.path.exists(model) and os.path.exists(jsonl)):
        pytest.skip(f"embedded corpus not found in {CORPUS} (run `make corpus`)")
    return CORPUS


def windows(path, seq_len):
    """The reference: the file's non-overlapping windows of seq_len tokens, as int64 [N, T]."""
    data = np.memmap(path, dtype=np.uint16, mode="r")
    n = len(data) // seq_len
    return np.asarray(data[: n * seq_len]).astype(np.int64).reshape(n, seq_len)


def run_python(code, timeout=60, **kwargs):
    """Runs `code` in a fresh interpreter (the one running the tests)."""
    import subprocess
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, **kwargs)
