"""Mistakes a new user makes are errors at construction, not garbage or a failure at the first
batch: a CUDA device without CUDA, a uint32 token file given as a path alone, a selection window
too big for memory."""
import numpy as np
import pytest
import torch

import groupmates


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_cuda_device_without_cuda_fails_at_construction(token_file):
    with pytest.raises(groupmates.ConfigError, match=r"device: 'cuda' but CUDA is not available here"):
        groupmates.GroupMatesLoader(sources=[token_file], sequence_length=8, device="cuda")
    with pytest.raises(groupmates.ConfigError, match=r"device: 'cuda:1' but CUDA is not available"):
        groupmates.GroupMatesLoader(sources=[token_file], sequence_length=8, device=torch.device("cuda:1"),
                                    pin_memory=True)
    with pytest.raises(groupmates.ConfigError, match=r"device: 'gpu0' is not a torch device"):
        groupmates.GroupMatesLoader(sources=[token_file], sequence_length=8, device="gpu0")
    loader = groupmates.GroupMatesLoader(sources=[token_file], sequence_length=8, device="cpu")
    assert next(loader)["input_ids"].device.type == "cpu"


def test_uint32_file_given_as_a_path_alone_is_refused_with_the_fix(tmp_path):
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 128_256, size=5000).astype(np.uint32)  # a Llama-3 sized vocabulary
    path = str(tmp_path / "llama.bin")
    ids.tofile(path)
    with pytest.raises(groupmates.ConfigError, match=r"llama.bin looks like uint32 token ids.*dtype='uint32'"):
        groupmates.GroupMatesLoader(sources=[path], sequence_length=100)
    loader = groupmates.GroupMatesLoader(sources=[{"paths": [path], "dtype": "uint32"}], sequence_length=100,
                                         batch_size=2, shuffle=False)
    np.testing.assert_array_equal(next(loader)["input_ids"].numpy(), ids[:200].astype(np.int64).reshape(2, 100))


def test_uint16_files_pass_and_odd_sizes_are_refused(tmp_path, token_file):
    groupmates.SourceConfig.from_path(token_file)  # random uint16 ids: every second word is not <= 3
    small = np.arange(1, 9, dtype=np.uint32)  # 8 uint32 ids: too few to tell, read as uint16
    small.tofile(str(tmp_path / "small.bin"))
    assert groupmates.SourceConfig.from_path(str(tmp_path / "small.bin")).dtype == "uint16"
    (tmp_path / "odd.bin").write_bytes(b"\x01\x00\x02")
    with pytest.raises(groupmates.ConfigError, match=r"odd.bin: 3 bytes is not a whole number"):
        groupmates.SourceConfig.from_path(str(tmp_path / "odd.bin"))
    zeros = np.zeros(1000, dtype=np.uint16)  # all zero: as ambiguous as can be, but not uint32 evidence
    zeros.tofile(str(tmp_path / "zeros.bin"))
    assert groupmates.SourceConfig.from_path(str(tmp_path / "zeros.bin")).dtype == "uint16"


def test_a_selection_window_too_big_for_memory_is_refused_with_the_fix(token_file):
    if not groupmates.engine_available():
        pytest.skip(f"groupmates._engine did not import: {groupmates.engine_error()}")
    # 2^20 candidates of 1025 tokens: 67 GiB by the estimate; refused before anything is allocated
    with pytest.raises(groupmates.ConfigError) as e:
        groupmates.GroupMatesLoader(sources=[token_file], sequence_length=1024, labels=True, vocab_size=50257,
                                    selection=dict(mode="group", window_size=1 << 20))
    message = str(e.value)
    assert e.value.where == "SelectionConfig.window_size", message
    assert "need an estimated 67.3" in message and "GiB" in message, message
    assert "max_window_memory_bytes = 4.00 GiB" in message and "Use window_size <= 62253" in message, message
    assert "raise max_window_memory_bytes to allow it" in message, message
