#!/usr/bin/env python3
"""The baseline of train_gpt.py: the small GPT of gpt_common.py trained on the embedded Austen
corpus with torch.utils.data.DataLoader over windows tokenized up front (with the corpus's
SentencePiece model through groupmates.Tokenizer).

    make corpus && make python-install
    .venv/bin/python examples/train_gpt_baseline.py --steps 200 [--checkpoint-dir DIR]
"""
import json

import torch

from gpt_common import held_out_rows, setup, train


def main():
    args, tok = setup()

    # Data: tokenize every document, join with EOS, cut into windows of seq_len + 1, shuffle.
    ids = []
    with open(f"{args.corpus}/austen.jsonl") as f:
        for line in f:
            ids += tok.encode(json.loads(line)["text"]) + [tok.eos_id]
    data = torch.tensor(ids, dtype=torch.int64)
    windows = data[: len(data) // (args.seq_len + 1) * (args.seq_len + 1)].view(-1, args.seq_len + 1)
    loader = torch.utils.data.DataLoader(windows, batch_size=args.batch, shuffle=True, drop_last=True)

    train(args, tok, loader, held_out=held_out_rows(args, tok),
          inputs=lambda batch: (batch[:, :-1].to(args.device), batch[:, 1:].to(args.device)))


if __name__ == "__main__":
    main()
