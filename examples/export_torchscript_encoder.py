#!/usr/bin/python3
"""Export a small sentence encoder as TorchScript for groupmates::TorchScriptEncoder.

The contract TorchScriptEncoder expects (include/groupmates/engine/torchscript_encoder.h):
    forward(ids: int64 [W, T], mask: [W, T]) -> float [W, D]
The mask is 1/True for real tokens and 0/False for padding; TorchScriptEncoder passes it as int64,
so the module below accepts any dtype (bool or integer) and converts it itself. The output need
not be normalised: TorchScriptEncoder L2-normalises it (a module returning [W, T, D] hidden
states also works: TorchScriptEncoder then takes their masked mean).

The model here is deliberately tiny and untrained (token embedding, one self-attention block,
masked mean pool, projection) and needs no download. A real sentence encoder is exported the same
way: wrap it in a module with this forward signature and torch.jit.script (or torch.jit.trace) it.

Run with Debian's Python, which has torch:
    /usr/bin/python3 examples/export_torchscript_encoder.py --out encoder.pt
    build/examples/torchscript_encoder_demo encoder.pt
With --reference DIR it also writes a sample input and this module's (normalised) output on it,
as raw little-endian files, for the C++ test that checks the loaded module gives the same result:
    DIR/shape.txt "W T D", DIR/ids.i64 [W, T], DIR/mask.u8 [W, T], DIR/expected.f32 [W, D].
"""
import argparse
import os

import torch
import torch.nn.functional as F


class TinySentenceEncoder(torch.nn.Module):
    """Token embedding + one pre-norm self-attention block + masked mean pool + Linear."""

    def __init__(self, vocab_size: int = 50304, width: int = 64, heads: int = 4, out_dim: int = 64):
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = torch.nn.Embedding(vocab_size, width)
        self.norm = torch.nn.LayerNorm(width)
        self.attn = torch.nn.MultiheadAttention(width, heads, batch_first=True)
        self.ff = torch.nn.Sequential(torch.nn.LayerNorm(width), torch.nn.Linear(width, 2 * width),
                                      torch.nn.GELU(), torch.nn.Linear(2 * width, width))
        self.proj = torch.nn.Linear(width, out_dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.to(torch.bool)
        # Ids outside the vocabulary (e.g. another tokenizer's) are folded in rather than failing.
        x = self.embed(torch.remainder(ids, self.vocab_size))
        y = self.norm(x)
        # An all-padding row would make attention NaN: let such rows attend to everything.
        padding = ~keep & keep.any(dim=1, keepdim=True)
        attended, _ = self.attn(y, y, y, key_padding_mask=padding, need_weights=False)
        x = x + attended
        x = x + self.ff(x)
        weight = keep.to(x.dtype).unsqueeze(-1)
        pooled = (x * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1.0)
        return self.proj(pooled)


def sample_input(rows: int, length: int, vocab: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (rows, length), generator=g, dtype=torch.long)
    lengths = torch.randint(1, length + 1, (rows,), generator=g)
    lengths[0] = length  # one full row
    mask = torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)
    return ids, mask


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tiny_sentence_encoder.pt", help="TorchScript file to write")
    ap.add_argument("--dim", type=int, default=64, help="output width D")
    ap.add_argument("--seed", type=int, default=0, help="torch.manual_seed for the (untrained) weights")
    ap.add_argument("--reference", default=None, help="directory for a sample input and the expected output")
    ap.add_argument("--rows", type=int, default=6)
    ap.add_argument("--length", type=int, default=32)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    model = TinySentenceEncoder(out_dim=args.dim).eval()
    scripted = torch.jit.script(model)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = f"{args.out}.tmp.{os.getpid()}"
    scripted.save(tmp)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: forward(ids [W, T] int64, mask [W, T]) -> [W, {args.dim}]")

    if args.reference:
        os.makedirs(args.reference, exist_ok=True)
        ids, mask = sample_input(args.rows, args.length, model.vocab_size, args.seed + 1)
        with torch.no_grad():
            expected = F.normalize(model(ids, mask), p=2.0, dim=1, eps=1e-12)
            scripted_out = F.normalize(scripted(ids, mask.to(torch.long)), p=2.0, dim=1, eps=1e-12)
        assert torch.allclose(expected, scripted_out, atol=1e-6), "scripted module differs from eager"
        ids.numpy().astype("<i8").tofile(os.path.join(args.reference, "ids.i64"))
        mask.numpy().astype("u1").tofile(os.path.join(args.reference, "mask.u8"))
        expected.numpy().astype("<f4").tofile(os.path.join(args.reference, "expected.f32"))
        with open(os.path.join(args.reference, "shape.txt"), "w") as f:
            f.write(f"{args.rows} {args.length} {args.dim}\n")
        print(f"wrote the sample input and expected output ({args.rows} x {args.length} -> {args.dim}) to {args.reference}")


if __name__ == "__main__":
    main()
