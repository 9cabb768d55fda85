"""What examples/train_gpt.py and examples/train_gpt_baseline.py share: the small GPT, the command
line, the training loop and the sample at the end. The two scripts differ only in how the batches
are made (python/README.md shows the diff)."""
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


def setup():
    """(args, tokenizer): the command line, the seed, and the corpus's SentencePiece tokenizer."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--checkpoint", default="/tmp/train_gpt.pt")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    return args, groupmates.Tokenizer(f"{args.corpus}/austen.model")


def train(args, tok, loader, tokens, on_step=None, checkpoint=None):
    """Trains a GPT for args.steps steps on tokens(batch) [B, seq_len + 1] of each batch of `loader`
    (iterated again until the steps are done), calling on_step(step, model, opt) after every
    optimizer step; every 100 steps saves the model, the optimizer and checkpoint() (a dict) to
    args.checkpoint; then prints a sample."""
    model = GPT(tok.vocab_size, seq_len=args.seq_len).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    step, t0 = 0, time.time()
    while step < args.steps:
        for batch in loader:
            batch = tokens(batch)
            x, y = batch[:, :-1], batch[:, 1:]
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if on_step is not None:
                on_step(step, model, opt)
            if step % 50 == 0 or step == 1:
                print(f"step {step}: loss {loss.item():.3f} ({time.time() - t0:.1f} s)", flush=True)
            if step % 100 == 0:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), **(checkpoint() if checkpoint else {})},
                           args.checkpoint)
            if step == args.steps:
                break

    model.eval()
    out = torch.tensor([[tok.eos_id]], device=args.device)
    with torch.no_grad():
        for _ in range(60):
            logits = model(out[:, -args.seq_len:])[:, -1]
            out = torch.cat([out, torch.multinomial(F.softmax(logits, -1), 1)], 1)
    print("sample:", tok.decode(out[0, 1:].tolist()))
    return model
