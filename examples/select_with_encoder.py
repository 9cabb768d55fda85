#!/usr/bin/env python3
"""Group-MATES selection with your own encoder instead of the built-in hashed n-gram one.

A small sentence encoder (token embedding, mean over the real tokens, linear projection) is exported
to TorchScript and handed to the loader by file (SelectionConfig encoder="torchscript",
encoder_path=FILE); --encoder module hands over the torch.nn.Module itself (groupmates scripts it and
the engine runs the script, without the GIL); --encoder hashed_ngram is the default encoder, for
comparison. A small GPT then trains on the selected rows of the embedded Austen corpus for a few
steps, probed every 10 steps; the encoder is frozen, the influence model's head trains on top of it.

    make corpus && make python-install
    .venv/bin/python examples/select_with_encoder.py [--encoder torchscript|module|hashed_ngram] [--steps 40]

Paths: the corpus relative to this file; the exported encoder into --out-dir (default ./encoders).
A real encoder (e.g. a small pretrained sentence encoder, or the live model's own embedding) is
exported the same way: a module with forward(ids int64 [rows, T], mask int64 [rows, T]) -> [rows, D].
"""
import argparse
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import groupmates
from gpt_common import held_out_loss, held_out_rows

HERE = os.path.dirname(os.path.abspath(__file__))


class MeanPoolEncoder(nn.Module):
    """Token embedding, masked mean over the row, linear projection: [rows, T] ids -> [rows, dim]."""

    def __init__(self, vocab: int, width: int = 64, dim: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.proj = nn.Linear(width, dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weight = mask.to(torch.float32).unsqueeze(-1)
        pooled = (self.embed(ids) * weight).sum(1) / weight.sum(1).clamp_min(1.0)
        return self.proj(pooled)


class TinyLM(nn.Module):
    """A one-layer causal transformer: enough for the probes to measure something."""

    def __init__(self, vocab: int, dim: int = 64, seq_len: int = 64):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(seq_len, dim)
        self.block = nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.head = nn.Linear(dim, vocab)
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(seq_len), persistent=False)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        return self.head(self.block(x, src_mask=self.causal[:t, :t]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder", default="torchscript", choices=["torchscript", "module", "hashed_ngram"])
    ap.add_argument("--corpus", default=os.path.join(HERE, "..", "data", "corpus"),
                    help="directory with austen.jsonl and austen.model (make corpus)")
    ap.add_argument("--out-dir", default="encoders", help="where the exported encoder is written")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    torch.manual_seed(0)
    tok = groupmates.Tokenizer(os.path.join(args.corpus, "austen.model"))

    # 1) The encoder, exported to TorchScript (what a user does once, e.g. from a pretrained model).
    encoder = MeanPoolEncoder(tok.vocab_size).eval()
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, "mean_pool_encoder.pt")
    torch.jit.script(encoder).save(path)
    chosen = {"torchscript": dict(encoder="torchscript", encoder_path=path),
              "module": dict(encoder=encoder),  # scripted by groupmates when the loader starts
              "hashed_ngram": dict(encoder="hashed_ngram")}[args.encoder]
    print(f"encoder: {args.encoder}" + (f" ({path})" if args.encoder == "torchscript" else ""))

    # 2) A selecting loader over the corpus: windows of 64 candidates, half of each selected.
    selection = groupmates.SelectionConfig(mode="group", window_size=64, clusters=4, refresh_mode="at_step",
                                           refresh_train_steps=30, **chosen)
    probes = groupmates.ProbeConfig(interval_steps=10, first_step=5, rollout_length=2, random_rollouts=4,
                                    neighbour_rollouts=4, effect_delay_steps=2, budget=0)
    source = groupmates.SourceConfig(paths=[os.path.join(args.corpus, "austen.jsonl")], format="jsonl",
                                     tokenizer_model=os.path.join(args.corpus, "austen.model"))
    loader = groupmates.GroupMatesLoader(sources=[source], sequence_length=args.seq_len, labels=True,
                                         batch_size=args.batch, eos_id=tok.eos_id, vocab_size=tok.vocab_size,
                                         epochs=0, selection=selection, probes=probes)

    held_out = held_out_rows(args, tok)  # Emma chapters: the text selection should help, and the probes' labels
    loader.set_reference(held_out)

    # 3) A few training steps; the loader probes copies of the model and refreshes its influence model.
    model = TinyLM(tok.vocab_size, seq_len=args.seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    start = time.perf_counter()
    for step, batch in zip(range(args.steps), loader):
        logits = model(batch["input_ids"])
        loss = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loader.on_step(step, model, opt, reference_batches=held_out)
    elapsed = time.perf_counter() - start

    # 4) What selection did, and the encoder the state records (a resume with another one is refused).
    s = loader.selection_stats()
    print(f"{args.steps} steps in {elapsed:.1f} s, last training loss {loss.item():.3f}, "
          f"held-out loss {held_out_loss(model, held_out, 'cpu'):.3f}")
    print(f"selection: {s['selected']} of {s['seen']} candidates over {s['windows']} windows, "
          f"{s['refreshes']} refreshes published, {s['refreshes_gated']} held back by the refresh gate, "
          f"model version {s['model_version']}")
    recorded = [line.split(" ", 2)[2] for line in loader.state_dict()["state"].splitlines()
                if line.startswith("extra gm.encoder ")]
    print("encoder recorded in the loader state:", recorded[0] if recorded else "?")
    loader.close()


if __name__ == "__main__":
    main()
