"""SourceConfig.append_eos=False: documents that already end with EOS get none appended."""
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
