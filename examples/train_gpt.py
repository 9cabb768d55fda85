#!/usr/bin/env python3
"""The small GPT of gpt_common.py trained on the embedded Austen corpus, fed by
groupmates.GroupMatesLoader: it streams, tokenizes and packs the JSONL itself, checkpoints its
position and selects the data with Group-MATES, probing copies of the live model (python/README.md
shows the diff to train_gpt_baseline.py, the same with torch.utils.data.DataLoader).

    make corpus && make python-install
    .venv/bin/python examples/train_gpt.py --steps 200
"""
import groupmates
from gpt_common import setup, train


def main():
    args, tok = setup()

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

    train(args, tok, loader,
          tokens=lambda batch: batch["input_ids"],  # already on args.device
          on_step=lambda step, model, opt: loader.on_step(step, model, opt,  # probes a copy
                                                          reference_batches=held_out["input_ids"]),
          checkpoint=lambda: {"data": loader.state_dict()})  # the loader's exact position, next to the weights
    loader.close()


if __name__ == "__main__":
    main()
