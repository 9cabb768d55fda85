#!/usr/bin/env python3
"""The small GPT of gpt_common.py trained on the embedded Austen corpus, fed by
groupmates.GroupMatesLoader: it streams, tokenizes and packs the JSONL itself, hands over inputs
with their next-token labels, checkpoints its position and selects the data with Group-MATES,
probing copies of the live model (python/README.md shows the diff to train_gpt_baseline.py, the
same with torch.utils.data.DataLoader). --selection none turns selection off.

    make corpus && make python-install
    .venv/bin/python examples/train_gpt.py --steps 200 [--selection none] [--checkpoint-dir DIR]
"""
import groupmates
from gpt_common import held_out_rows, print_selection_stats, setup, train


def main():
    args, tok = setup(selection=True)

    # Data: the C++ loader tokenizes the JSONL, packs documents with EOS, shuffles, and streams endlessly.
    probes = groupmates.ProbeConfig(interval_steps=50, random_rollouts=4, neighbour_rollouts=4)
    source = groupmates.SourceConfig(paths=[f"{args.corpus}/austen.jsonl"], format="jsonl",
                                     tokenizer_model=f"{args.corpus}/austen.model")
    loader = groupmates.GroupMatesLoader(sources=[source], sequence_length=args.seq_len, labels=True,
                                         batch_size=args.batch, eos_id=tok.eos_id, vocab_size=tok.vocab_size,
                                         epochs=0, device=args.device,  # Group-MATES selection:
                                         selection=args.selection, probes=probes)
    held_out = held_out_rows(args, tok)
    if args.selection != "none":
        loader.set_reference(held_out)  # the text selection should help

    # What a metrics tool would log (TensorBoard: writer.add_scalar(k, v, step) for each item; W&B: wandb.log(m)).
    loader.add_metrics_callback(lambda step, m: print(f"metrics at step {step}: " + ", ".join(
        f"{k}={v:.3g}" for k, v in m.items() if "cluster_" not in k)), every=args.eval_every)

    train(args, tok, loader, held_out=held_out,
          inputs=lambda batch: (batch["input_ids"], batch["labels"]),  # already on args.device
          on_step=lambda step, model, opt: loader.on_step(step, model, opt,  # probes a copy
                                                          reference_batches=held_out),
          checkpoint=lambda: {"data": loader.state_dict()})  # the loader's exact position, next to the weights
    print_selection_stats(loader.selection_stats())
    loader.close()


if __name__ == "__main__":
    main()
