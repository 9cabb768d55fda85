"""SelectionConfig.encoder from Python: a torch.nn.Module is scripted (else traced) and run by the engine
as TorchScript; it selects exactly as the same module exported to a file, differently from other
weights; a resume with another encoder is refused; a module breaking the contract is a clear error."""
import os
import random
import re

import pytest
import torch
import torch.nn as nn

import groupmates
from groupmates import encoders

T, B, VOCAB = 32, 4, 50257
SEED = int(os.environ.get("GM_TEST_SEED", random.randrange(1 << 30)))
# Reference rows: the importance prior scores from the first window (no random warm-up), so the
# selected rows, not only the clusters, depend on the embeddings (relational greedy).
REFERENCE = torch.randint(0, VOCAB, (4, T), generator=torch.Generator().manual_seed(SEED))


class MeanPool(nn.Module):
    def __init__(self, width=8, dim=6):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.proj = nn.Linear(width, dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = mask.to(torch.float32).unsqueeze(-1)
        return self.proj((self.embed(ids) * w).sum(1) / w.sum(1).clamp_min(1.0))


class Untypable(MeanPool):
    """Not scriptable (a Python-only construct in forward), traceable: the tracing fallback."""

    def forward(self, ids, mask):
        same = lambda x: x  # noqa: E731 (a lambda: TorchScript refuses it, tracing runs it)
        return super().forward(same(ids), same(mask))


def module(seed, cls=MeanPool):
    torch.manual_seed(seed)
    return cls().eval()


def loader(token_file, encoder=None, state=None, **selection):
    if encoder is not None:
        selection["encoder"] = encoder
    ld = groupmates.GroupMatesLoader(
        sources=[token_file], sequence_length=T, batch_size=B, seed=3, epochs=0, state=state,
        selection=groupmates.SelectionConfig(mode="group", window_size=32, clusters=3, seed=SEED, **selection),
        probes=groupmates.ProbeConfig(interval_steps=0))
    ld.set_reference(REFERENCE)
    return ld


def stream(ld, n=16):
    out = []
    for batch in ld:
        out.append((batch["ids"].clone(), batch["cluster"].clone()))
        if len(out) == n:
            break
    return out


def test_module_selects_as_its_torchscript_file_and_other_weights_select_otherwise(token_file, tmp_path):
    print(f"GM_TEST_SEED={SEED}")
    a = module(SEED)
    path = str(tmp_path / "a.pt")
    torch.jit.script(a).save(path)
    by_module = stream(loader(token_file, a))
    by_file = stream(loader(token_file, "torchscript", encoder_path=path))
    by_other = stream(loader(token_file, module(SEED + 1)))
    by_traced = stream(loader(token_file, module(SEED, Untypable)))  # same weights, traced
    for (ia, ca), (ib, cb), (it, ct) in zip(by_module, by_file, by_traced):
        assert torch.equal(ia, ib) and torch.equal(ca, cb)
        assert torch.equal(ia, it) and torch.equal(ca, ct)
    assert any(not torch.equal(x[0], y[0]) or not torch.equal(x[1], y[1]) for x, y in zip(by_module, by_other))
    # The engine's embeddings are the module's own: the file the Python side wrote holds a's weights.
    scripted = torch.jit.load(encoders.encoder_file(a))
    ids = torch.randint(0, VOCAB, (5, T))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        assert torch.equal(scripted(ids, mask), a(ids, mask))


def test_resume_with_another_encoder_is_refused(token_file):
    a = module(SEED)
    first = loader(token_file, a)
    stream(first, 3)
    state = first.state_dict()
    first.close()
    resumed = stream(loader(token_file, module(SEED), state=state), 2)  # same weights, scripted again: fine
    assert len(resumed) == 2
    for other in (module(SEED + 1), "hashed_ngram"):
        with pytest.raises(groupmates.GroupMatesError, match="gm.encoder"):
            stream(loader(token_file, other, state=state), 1)


def test_modules_breaking_the_contract_are_clear_errors(token_file):
    class Integers(nn.Module):
        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return ids * 2

    class PerToken(nn.Module):
        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return ids.float().sum(1)

    for bad, says in ((Integers(), "dtype Long"), (PerToken(), r"returned shape \[2\]")):
        with pytest.raises(groupmates.ConfigError, match=says):
            stream(loader(token_file, bad), 1)
    with pytest.raises(groupmates.ConfigError, match="SelectionConfig.encoder"):
        loader(token_file, 42).selection.to_core()
    with pytest.raises(groupmates.ConfigError, match="SelectionConfig.encoder_path"):
        stream(loader(token_file, "torchscript", encoder_path="/nonexistent/encoder.pt"), 1)


def test_example_exports_an_encoder_and_selects_with_it(corpus, tmp_path):
    import subprocess
    import sys
    from conftest import REPO
    script = os.path.join(REPO, "examples", "select_with_encoder.py")
    r = subprocess.run([sys.executable, script, "--corpus", corpus, "--steps", "12", "--encoder", "torchscript"],
                       cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "encoders" / "mean_pool_encoder.pt").exists()  # relative to the working directory
    assert "encoder recorded in the loader state: torchscript(weights_xxh3=" in r.stdout, r.stdout
    m = re.search(r"selection: 96 of \d+ candidates over \d+ windows, (\d+) refreshes published, (\d+) held back", r.stdout)
    assert m and int(m.group(1)) + int(m.group(2)) >= 1, r.stdout  # a probe refreshed the head on the encoder
