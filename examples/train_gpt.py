#!/usr/bin/env python3
"""A small GPT trained on the embedded Austen corpus. train_gpt.py feeds it with
groupmates.GroupMatesLoader, train_gpt_baseline.py with torch.utils.data.DataLoader (tokenizing with
the corpus's SentencePiece model through groupmates.Tokenizer); python/README.md shows the diff.

    make corpus && make python-install
    .venv/bin/python examples/train_gpt.py --steps 200     # or train_gpt_baseline.py
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import groupmates


class GPT(nn.Module):
    def __init__(self, vocab, dim=128, layers=2, heads=4, seq_len=128):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(seq_len, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers)
        self.head = nn.Linear(dim, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq_len), persistent=False)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        return self.head(self.blocks(x, mask=self.mask[:t, :t]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--checkpoint", default="/tmp/train_gpt.pt")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    tok = groupmates.Tokenizer(f"{args.corpus}/austen.model")

    # Data: the C++ loader tokenizes the JSONL, packs documents with EOS, shuffles, and streams endlessly.
    probes = groupmates.ProbeConfig(interval_steps=50, rollout_length=4, random_rollouts=4, neighbour_rollouts=4)
    source = groupmates.SourceConfig(paths=[f"{args.corpus}/austen.jsonl"], format="jsonl",
                                     tokenizer_model=f"{args.corpus}/austen.model")
    loader = groupmates.GroupMatesLoader(sources=[source], sequence_length=args.seq_len + 1, batch_size=args.batch,
                                         eos_id=tok.eos_id, vocab_size=tok.vocab_size, epochs=0,
                                         device=args.device, pin_memory=True,  # Group-MATES selection:
                                         selection="group", probes=probes)
    ref = groupmates.SourceConfig(**{**vars(source), "paths": [f"{args.corpus}/austen_heldout.jsonl"]})
    held_out = next(iter(groupmates.GroupMatesLoader(sources=[ref], sequence_length=args.seq_len + 1, eos_id=tok.eos_id)))

    model = GPT(tok.vocab_size, seq_len=args.seq_len).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    step, t0 = 0, time.time()
    while step < args.steps:
        for batch in loader:
            batch = batch["input_ids"]  # already on args.device
            x, y = batch[:, :-1], batch[:, 1:]
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loader.on_step(step, model, opt, reference_batches=held_out["input_ids"])  # probes a copy
            if step % 50 == 0 or step == 1:
                print(f"step {step}: loss {loss.item():.3f} ({time.time() - t0:.1f} s)", flush=True)
            if step % 100 == 0:  # the loader's exact position goes next to the model's weights
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "data": loader.state_dict()},
                           args.checkpoint)
            if step == args.steps:
                break
    loader.close()

    model.eval()
    out = torch.tensor([[tok.eos_id]], device=args.device)
    with torch.no_grad():
        for _ in range(60):
            logits = model(out[:, -args.seq_len:])[:, -1]
            out = torch.cat([out, torch.multinomial(F.softmax(logits, -1), 1)], 1)
    print("sample:", tok.decode(out[0, 1:].tolist()))


if __name__ == "__main__":
    main()
