"""Globs and directories in SourceConfig.paths (expanded, sorted, by the C++ core) and in
SourceConfig.from_path."""
import numpy as np
import pytest
import torch

import groupmates
from test_training_batches import fresh_seed


def test_globs_and_directories_in_paths(tmp_path):
    """A glob or a directory in paths stands for its files, sorted; one matching nothing names itself."""
    rng = np.random.default_rng(fresh_seed())
    names = sorted(f"part-{int(rng.integers(0, 10**6)):06d}.bin" for _ in range(4))
    for n in names:
        rng.integers(0, 1000, size=16 * int(rng.integers(3, 8))).astype(np.uint16).tofile(tmp_path / n)

    def rows(paths):
        loader = groupmates.GroupMatesLoader(
            sources=[{"paths": paths, "format": "token_file", "dtype": "uint16"}],
            sequence_length=16, batch_size=2, seed=3)
        return torch.cat([b["input_ids"] for b in loader])

    listed = rows([str(tmp_path / n) for n in names])
    assert torch.equal(rows([str(tmp_path / "part-*.bin")]), listed)
    assert torch.equal(rows([str(tmp_path)]), listed)

    with pytest.raises(groupmates.ConfigError, match="matches no file"):
        rows([str(tmp_path / "nothing-*.bin")])


def test_a_glob_given_as_a_source_path(tmp_path):
    """sources=["dir/*.bin"]: a token-file source over the glob, each file's dtype checked."""
    rng = np.random.default_rng(fresh_seed())
    for k in range(3):
        rng.integers(0, 1000, size=64).astype(np.uint16).tofile(tmp_path / f"t{k}.bin")
    s = groupmates.SourceConfig.from_path(str(tmp_path / "t*.bin"))
    assert s.paths == [str(tmp_path / "t*.bin")] and s.format == "token_file"
    with pytest.raises(groupmates.ConfigError, match="matches no file"):
        groupmates.SourceConfig.from_path(str(tmp_path / "u*.bin"))
