"""What examples/train_gpt.py and examples/train_gpt_baseline.py share: the small GPT, the command
line, the training loop and the sample at the end. The two scripts differ only in how the batches
are made (python/README.md shows the diff). Both print the held-out loss as they go and at the end,
run from any directory, and write their checkpoint to --checkpoint-dir (default ./checkpoints)."""
import argparse
import json
import os
import sys
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


HERE = os.path.dirname(os.path.abspath(__file__))


def setup(selection=False):
    """(args, tokenizer): the command line, the seed, and the corpus's SentencePiece tokenizer.
    Paths default relative to this file (the corpus) and to the working directory (checkpoints), so
    the examples run from any directory."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=os.path.join(HERE, "..", "data", "corpus"),
                    help="directory with austen.jsonl, austen_heldout.jsonl, austen.model (make corpus)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--eval-every", type=int, default=50, help="held-out loss every N steps (and at the end)")
    ap.add_argument("--checkpoint-dir", default="checkpoints",
                    help="where the checkpoint (model, optimizer, loader position) is written every 100 steps")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    if selection:
        ap.add_argument("--selection", default="group",
                        choices=["group", "individual", "importance", "random", "none"],
                        help="SelectionConfig.mode; 'none' streams every candidate (selection off)")
    args = ap.parse_args()
    torch.manual_seed(0)
    os.makedirs(args.checkpoint_dir, exist_ok=True)
    args.checkpoint = os.path.join(args.checkpoint_dir, os.path.basename(sys.argv[0]).replace(".py", ".pt"))
    return args, groupmates.Tokenizer(f"{args.corpus}/austen.model")


def held_out_rows(args, tok, rows=32):
    """The first `rows` windows of seq_len + 1 tokens of the held-out text (Emma chapters 1-21),
    tokenized and packed with EOS by hand (the reference both examples evaluate on): int64 [R, T + 1]."""
    ids = []
    with open(f"{args.corpus}/austen_heldout.jsonl") as f:
        for line in f:
            ids += tok.encode(json.loads(line)["text"]) + [tok.eos_id]
            if len(ids) >= rows * (args.seq_len + 1):
                break
    n = min(rows, len(ids) // (args.seq_len + 1))
    return torch.tensor(ids[: n * (args.seq_len + 1)], dtype=torch.int64).view(n, args.seq_len + 1)


def held_out_loss(model, rows, device):
    """Mean next-token loss of `model` on held-out rows [R, T + 1]."""
    model.eval()
    with torch.no_grad():
        rows = rows.to(device)
        loss = F.cross_entropy(model(rows[:, :-1]).flatten(0, 1), rows[:, 1:].flatten())
    model.train()
    return loss.item()


def print_selection_stats(s):
    """What selection did (GroupMatesLoader.selection_stats()), in a few lines."""
    if not s.get("windows"):  # a plain loader (--selection none) reports only seen = selected
        print(f"selection off: trained on {s['selected']} of {s['seen']} rows streamed")
        return
    p = s["probes"]
    print(f"selection: {s['selected']} of {s['seen']} candidates ({s['selected'] / max(s['seen'], 1):.0%}) "
          f"over {s['windows']} windows ({s['warmup_windows']} warm-up), model version {s['model_version']}, "
          f"{s['refreshes']} refreshes, last held-out Spearman {s['last_heldout_spearman']:.3f}")
    shares = [f"{sel / max(seen, 1):.0%}" for sel, seen in zip(s["selected_per_cluster"], s["seen_per_cluster"])]
    print(f"selected share per cluster: {' '.join(shares) or '-'}")
    print(f"probes: {p['probes_completed']} completed, {p['rollouts_kept']} rollouts, {p['probe_share']:.1%} of the "
          f"wall clock; probe FLOPs {s['cost']['probe_flops'] / max(s['cost']['train_flops'], 1):.1%} of training")


def train(args, tok, loader, inputs, on_step=None, checkpoint=None, held_out=None):
    """Trains a GPT for args.steps steps on each batch of `loader` (iterated again until the steps
    are done): inputs(batch) gives (input_ids [B, T], labels [B, T]) on args.device, labels -100
    where there is no target (F.cross_entropy ignores them). Calls on_step(step, model, opt) after
    every optimizer step; every 100 steps saves the model, the optimizer and checkpoint() (a dict)
    to args.checkpoint; every args.eval_every steps and at the end prints the loss on `held_out`
    rows [R, T + 1]; then prints a sample. Returns (model, final held-out loss)."""
    model = GPT(tok.vocab_size, seq_len=args.seq_len).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    step, t0, heldout = 0, time.time(), float("nan")
    while step < args.steps:
        for batch in loader:
            x, y = inputs(batch)
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if on_step is not None:
                on_step(step, model, opt)
            if step % args.eval_every == 0 or step == 1 or step == args.steps:
                if held_out is not None:
                    heldout = held_out_loss(model, held_out, args.device)
                print(f"step {step}: loss {loss.item():.3f} held-out {heldout:.3f} ({time.time() - t0:.1f} s)", flush=True)
            if step % 100 == 0 or step == args.steps:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), **(checkpoint() if checkpoint else {})},
                           args.checkpoint)
            if step == args.steps:
                break
    print(f"final held-out loss {heldout:.4f} after {step} steps; checkpoint {args.checkpoint}")

    model.eval()
    out = torch.tensor([[tok.eos_id]], device=args.device)
    with torch.no_grad():
        for _ in range(60):
            logits = model(out[:, -args.seq_len:])[:, -1]
            out = torch.cat([out, torch.multinomial(F.softmax(logits, -1), 1)], 1)
    print("sample:", tok.decode(out[0, 1:].tolist()))
    return model, heldout
