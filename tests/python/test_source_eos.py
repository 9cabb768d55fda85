"""SourceConfig.append_eos=False: documents that already end with EOS get none appended;
SourceConfig.eos_id: a source appends its own id."""
import numpy as np
import torch

import groupmates
from test_training_batches import fresh_seed, write_megatron


def test_own_eos_equals_appended_eos(tmp_path):
    rng = np.random.default_rng(fresh_seed())
    raw = [rng.integers(10, 90, size=int(rng.integers(1, 30))) for _ in range(40)]
    write_megatron(str(tmp_path / "raw"), raw)
    write_megatron(str(tmp_path / "ended"), [np.append(d, 7) for d in raw])

    def rows(prefix, append_eos):
        loader = groupmates.GroupMatesLoader(
            sources=[{"paths": [str(tmp_path / prefix)], "format": "megatron", "append_eos": append_eos}],
            sequence_length=16, batch_size=2, eos_id=7, seed=3)
        return torch.cat([b["input_ids"] for b in loader])

    assert torch.equal(rows("ended", False), rows("raw", True))
    assert not torch.equal(rows("ended", True), rows("raw", True))


def test_a_source_appends_its_own_eos_id(tmp_path):
    """SourceConfig.eos_id: the id appended after this source's documents (-2: the loader's)."""
    rng = np.random.default_rng(fresh_seed())
    raw = [rng.integers(10, 90, size=int(rng.integers(1, 30))) for _ in range(40)]
    write_megatron(str(tmp_path / "raw"), raw)
    write_megatron(str(tmp_path / "ended5"), [np.append(d, 5) for d in raw])

    def rows(prefix, **source):
        loader = groupmates.GroupMatesLoader(
            sources=[{"paths": [str(tmp_path / prefix)], "format": "megatron", **source}],
            sequence_length=16, batch_size=2, eos_id=7, seed=3)
        return torch.cat([b["input_ids"] for b in loader])

    assert groupmates.SourceConfig(paths="x").eos_id == groupmates._core.LOADER_EOS_ID == -2
    assert torch.equal(rows("raw", eos_id=5), rows("ended5", append_eos=False))
    assert not (rows("raw", eos_id=5) == 7).any()
