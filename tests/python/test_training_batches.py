"""labels / loss_mask / position_ids / document boundaries against a straightforward reference,
on fresh random rows (the seed is printed; GM_TEST_SEED replays it) and through the loader."""
import os

import numpy as np
import pytest
import torch

import groupmates
from groupmates import _core


def fresh_seed():
    seed = int(os.environ.get("GM_TEST_SEED", np.random.default_rng().integers(1 << 62)))
    print(f"seed {seed} (GM_TEST_SEED={seed} to replay)")
    return seed


def reference(rows, T, eos, aligned, mask_across):
    """Per row: cut into runs (documents ending with EOS, then padding), read every field off them."""
    out = {k: [] for k in ("labels", "loss_mask", "position_ids", "document_ids")}
    cu, longest = [0], 0
    for r, x in enumerate(rows.tolist()):
        pad = [False] * (T + 1)
        if aligned and eos in x:
            first = x.index(eos)
            pad = [i > first for i in range(T + 1)]
        starts = [0] + [i for i in range(1, T) if (not pad[i - 1] and x[i - 1] == eos) or (pad[i] and not pad[i - 1])]
        bounds = starts + [T]
        doc = 0
        for a, b in zip(bounds, bounds[1:]):
            longest = max(longest, b - a)
            out["position_ids"] += list(range(b - a))
            out["document_ids"] += [-1 if pad[i] else doc for i in range(a, b)]
            doc += 0 if pad[a] else 1
        cu += [r * T + s for s in starts[1:]] + [(r + 1) * T]
        for i in range(T):
            target = not pad[i + 1] and not (mask_across and x[i] == eos)
            out["labels"].append(x[i + 1] if target else -100)
            out["loss_mask"].append(1.0 if target else 0.0)
    B = len(rows)
    ref = {k: np.array(v).reshape(B, T) for k, v in out.items()}
    ref["cu_seqlens"], ref["max_seqlen"] = np.array(cu), longest
    return ref


def test_targets_equal_the_reference_on_random_rows():
    rng = np.random.default_rng(fresh_seed())
    for trial in range(200):
        T, B, eos = int(rng.integers(1, 30)), int(rng.integers(1, 5)), int(rng.integers(0, 4))
        aligned, mask = bool(rng.integers(2)), bool(rng.integers(2))
        config = groupmates.LoaderConfig(sources=["unused"], sequence_length=T, eos_id=eos, labels=True,
                                         packing="document_aligned" if aligned else "packed",
                                         mask_across_documents=mask, position_ids=True, document_boundaries=True)
        rows = rng.integers(0, 6, size=(B, T + 1)).astype(np.int64)
        got = _core._training_targets(rows, config.to_core())
        want = reference(rows, T, eos, aligned, mask)
        for k in want:
            np.testing.assert_array_equal(np.asarray(got[k]), want[k], err_msg=f"trial {trial} field {k}")
        assert got["labels"].dtype == np.int64 and got["loss_mask"].dtype == np.float32
        assert got["cu_seqlens"].dtype == np.int32


def test_labelled_loader_reads_one_token_more_per_row_and_shifts(token_file):
    T, B = 32, 4
    labelled = groupmates.GroupMatesLoader(sources=[token_file], sequence_length=T, batch_size=B, seed=5, labels=True)
    longer = groupmates.GroupMatesLoader(sources=[token_file], sequence_length=T + 1, batch_size=B, seed=5)
    n = 0
    for got, raw in zip(labelled, longer):
        rows = raw["input_ids"]
        assert tuple(got["input_ids"].shape) == (B, T) and got["input_ids"].dtype == torch.int64
        assert torch.equal(got["input_ids"], rows[:, :T]) and torch.equal(got["labels"], rows[:, 1:])
        assert torch.equal(got["tokens"], rows)
        assert got["loss_mask"].dtype == torch.float32 and bool((got["loss_mask"] == 1).all())
        assert "position_ids" not in got and "cu_seqlens" not in got
        n += 1
    assert n > 100 and list(longer) == []  # both ended together
    assert labelled.state_dict()["state"] == longer.state_dict()["state"]  # the same stream


def write_megatron(prefix, docs):
    """Reference MMIDIDX v1 writer (uint16 documents)."""
    sizes = np.array([len(d) for d in docs], dtype=np.int32)
    pointers = np.concatenate([[0], np.cumsum(sizes[:-1].astype(np.int64) * 2)]).astype(np.int64)
    np.concatenate(docs).astype(np.uint16).tofile(prefix + ".bin")
    with open(prefix + ".idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00")
        f.write(np.array([1], dtype=np.uint64).tobytes() + bytes([8]))
        f.write(np.array([len(docs), len(docs) + 1], dtype=np.uint64).tobytes())
        f.write(sizes.tobytes() + pointers.tobytes() + np.arange(len(docs) + 1, dtype=np.int64).tobytes())


@pytest.mark.parametrize("packing", ["packed", "document_aligned"])
def test_padding_and_document_boundaries_through_the_loader(tmp_path, packing):
    rng = np.random.default_rng(fresh_seed())
    EOS, PAD, T = 3, 7, 16   # pad_id 7 is a real token of the data: only the EOS tells padding apart
    docs = [rng.integers(4, 40, size=int(rng.integers(1, 40))) for _ in range(60)]
    write_megatron(str(tmp_path / "docs"), docs)
    loader = groupmates.GroupMatesLoader(sources=[{"paths": [str(tmp_path / "docs")], "format": "megatron"}],
                                         sequence_length=T, batch_size=3, eos_id=EOS, pad_id=PAD, packing=packing,
                                         labels=True, mask_across_documents=True, position_ids=True,
                                         document_boundaries=True, seed=int(rng.integers(1 << 30)))
    padded = 0
    for b in loader:
        rows = b["tokens"].numpy()
        want = reference(rows, T, EOS, packing == "document_aligned", True)
        for k in ("labels", "loss_mask", "position_ids", "document_ids", "cu_seqlens"):
            np.testing.assert_array_equal(b[k].numpy(), want[k], err_msg=k)
        assert b["max_seqlen"] == want["max_seqlen"]
        padded += int((b["document_ids"] == -1).sum())
        # a loss over labels with ignore_index equals the loss_mask-weighted one
        logits = torch.randn(3, T, 40)
        ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), b["labels"].flatten())
        per_token = torch.nn.functional.cross_entropy(logits.flatten(0, 1), b["labels"].flatten().clamp(min=0),
                                                      reduction="none")
        weighted = (per_token * b["loss_mask"].flatten()).sum() / b["loss_mask"].sum()
        assert torch.allclose(ce, weighted)
    assert (padded > 0) == (packing == "document_aligned")


def test_bad_target_settings_name_the_field_and_the_fix(token_file):
    with pytest.raises(groupmates.ConfigError, match=r"LoaderConfig.position_ids: .*set eos_id"):
        groupmates.GroupMatesLoader(sources=[token_file], sequence_length=8, labels=True, position_ids=True)
    with pytest.raises(groupmates.ConfigError, match=r"LoaderConfig.document_boundaries: .*set labels = true"):
        groupmates.GroupMatesLoader(sources=[token_file], sequence_length=8, eos_id=0, document_boundaries=True)
