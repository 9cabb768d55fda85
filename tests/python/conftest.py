"""Fixtures of the groupmates Python suite (run by `make test-python`, part of `make test`)."""
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.environ.get("GROUPMATES_CORPUS", os.path.join(REPO, "data", "corpus"))
# The engine's CMake build directory of `make python-install` (setup.py: GROUPMATES_ENGINE_BUILD_DIR).
ENGINE_BUILD = os.environ.get("GROUPMATES_ENGINE_BUILD_DIR", os.path.join(REPO, "build-py-engine"))


@pytest.fixture(scope="session")
def token_file(tmp_path_factory):
    """A flat uint16 token file of 100_003 tokens (a partial window at the end), values < 50257."""
    path = str(tmp_path_factory.mktemp("tokens") / "tokens_u16.bin")
    rng = np.random.default_rng(1234)
    rng.integers(0, 50257, size=100_003, dtype=np.uint16).tofile(path)
    return path


@pytest.fixture(scope="session")
def testhooks():
    """groupmates_testhooks (python/src/testhooks.cpp): the test-only module over C++ internals the
    public API does not reach. Never installed: (re)built here in the engine's build directory (a
    no-op when up to date; `make python-testhooks` does the same) and imported from there."""
    import subprocess
    import groupmates
    if not groupmates.engine_available():
        pytest.skip(f"the test hooks need groupmates._engine, which did not import: {groupmates.engine_error()}")
    if not os.path.exists(os.path.join(ENGINE_BUILD, "CMakeCache.txt")):
        pytest.fail(f"no engine build directory {ENGINE_BUILD} (make python-install; or set GROUPMATES_ENGINE_BUILD_DIR)")
    subprocess.run(["cmake", "--build", ENGINE_BUILD, "-j2", "--target", "groupmates_testhooks"], check=True,
                   stdout=subprocess.DEVNULL)
    sys.path.insert(0, os.path.join(ENGINE_BUILD, "python"))
    import groupmates_testhooks
    return groupmates_testhooks


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


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "forks_with_threads: forks DataLoader workers from a process with live threads (deselected under "
        "ASan: GCC 12's ASan allocator is not fork-safe; scripts/test-python-asan.sh)")
