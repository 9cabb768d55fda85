"""The configs: Python dataclasses over the C++ structs bound in groupmates._core.

The C++ structs (include/groupmates/config.h, selection_config.h) are the single source: each
class here names the same fields (a test checks it), takes every default from a default-constructed
C++ struct, and is converted to it field by field by the C++ kind of each field (the bound class's
``_fields``); the C++ core validates the values and raises ConfigError naming the bad field.
Enum fields are strings here (their names in the bindings, e.g. ``mode="group"``)."""
import dataclasses
import glob as _glob
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from . import _core
from .errors import config_error


def _cpp_defaults(cpp_cls) -> Dict[str, Any]:
    """The defaults of a bound C++ struct, as the Python classes hold them (enums by name)."""
    cpp = cpp_cls()
    out = {}
    for name, _kind in cpp_cls._fields:
        value = getattr(cpp, name)
        out[name] = value.name if hasattr(type(value), "__members__") else value
    return out


_SOURCE = _cpp_defaults(_core.SourceConfig)
_LOADER = _cpp_defaults(_core.LoaderConfig)
_SELECTION = _cpp_defaults(_core.SelectionConfig)
_PROBES = _cpp_defaults(_core.ProbeConfig)


@dataclass
class SourceConfig:
    """One data source: files of one format, blended with the other sources by weight.

    paths:           files ("token_file", "jsonl") or prefixes without .bin/.idx ("megatron"); a glob
                     ("data/*.jsonl.zst") or a directory (its data files) stands for its matches, sorted;
                     one matching nothing is an error
    format:          "token_file" (flat little-endian ids, no header), "megatron" (MMIDIDX) or
                     "jsonl" (.jsonl or .jsonl.zst, text tokenized with SentencePiece or a tokenizer.json)
    name:            label in ids, logs and counters (default "source<i>")
    dtype:           "uint16" or "uint32" ("token_file" only)
    weight:          blend weight > 0 (normalised over sources)
    on_exhausted:    "end" (the pass ends) or "recycle" (reshuffle and go on)
    text_field:      "jsonl": the string field holding the document
    tokenizer_model: "jsonl": the SentencePiece .model file, or a Hugging Face tokenizer.json (byte-level
                     BPE; a path ending in ".json")
    append_eos:      "megatron"/"jsonl": append LoaderConfig.eos_id after each document; False when the
                     documents already end with it (Megatron data built with --append-eod)
    eos_id:          "megatron"/"jsonl" with append_eos: the id appended after this source's documents;
                     -2 (LOADER_EOS_ID): LoaderConfig.eos_id; -1: none
    max_line_bytes:  "jsonl": a longer line is a bad record ("line_too_long": skipped and counted, or an
                     error, by LoaderConfig.bad_input)
    zstd_cache_bytes: "jsonl", .zst files: decompressed zstd frames kept in memory per source (LRU); every
                     frame must fit (`groupmates reframe IN OUT` rewrites a file as 64 KiB frames). With
                     shuffle_block="auto" (the default) it also sets the local shuffle's span, so the
                     stream: resume with the same value
    index_cache:     "jsonl": keep each file's line index on disk (.NAME.gmidx beside it, else in
                     index_cache_dir), keyed by size, mtime and sampled content; stale ones are rebuilt
    index_cache_dir: "jsonl": where line indexes go when a file's directory is not writable ("": nowhere)
    """

    paths: Union[str, Sequence[str]]
    format: str = _SOURCE["format"]
    name: str = _SOURCE["name"]
    dtype: str = _SOURCE["dtype"]
    weight: float = _SOURCE["weight"]
    on_exhausted: str = _SOURCE["on_exhausted"]
    text_field: str = _SOURCE["text_field"]
    tokenizer_model: str = _SOURCE["tokenizer_model"]
    append_eos: bool = _SOURCE["append_eos"]
    eos_id: int = _SOURCE["eos_id"]
    max_line_bytes: int = _SOURCE["max_line_bytes"]
    zstd_cache_bytes: int = _SOURCE["zstd_cache_bytes"]
    index_cache: bool = _SOURCE["index_cache"]
    index_cache_dir: str = _SOURCE["index_cache_dir"]

    @staticmethod
    def from_path(path: str) -> "SourceConfig":
        """A source for one path, its format guessed from the name: *.jsonl[.zst] is "jsonl",
        a prefix with PREFIX.idx is "megatron", anything else a uint16 "token_file" after a check
        of its first MiB (check_token_file_dtype): a file that reads as uint32 ids raises
        ConfigError instead of streaming garbage; give SourceConfig(paths=..., dtype=...) to choose."""
        p = os.fspath(path)
        if p.endswith(".jsonl") or p.endswith(".jsonl.zst"):
            return SourceConfig(paths=[p], format="jsonl")
        if os.path.exists(p + ".idx") and os.path.exists(p + ".bin"):
            return SourceConfig(paths=[p], format="megatron")
        if any(c in p for c in "*?["):  # a glob of token files: each one's dtype is checked
            matches = sorted(m for m in _glob.glob(p) if os.path.isfile(m))
            if not matches:
                raise config_error(p, "the pattern matches no file; check the directory and the pattern")
            for m in matches:
                check_token_file_dtype(m)
            return SourceConfig(paths=[p])
        check_token_file_dtype(p)
        return SourceConfig(paths=[p])

    def to_core(self, who: str = "SourceConfig") -> "_core.SourceConfig":
        paths = [self.paths] if isinstance(self.paths, (str, os.PathLike)) else list(self.paths)
        return to_cpp(self, _core.SourceConfig, who, paths=[os.fspath(p) for p in paths])


# check_token_file_dtype: bytes read, pairs of 16-bit words needed before a file is called uint32,
# and the largest high word of a uint32 id (ids < 2^18: vocabularies up to 262,144).
_DTYPE_SAMPLE_BYTES = 1 << 20
_DTYPE_MIN_PAIRS = 16
_DTYPE_MAX_HIGH_WORD = 3


def check_token_file_dtype(path: str) -> None:
    """Refuses a flat token file given without a dtype when it is not plainly uint16: raises
    ConfigError naming the file if its size is odd, or if it reads as little-endian uint32 ids
    (in its first MiB, at least 16 pairs of 16-bit words, every second word <= 3 and not all
    words 0: as uint16 that would be a token stream with every other id in {0..3}, which no text
    gives). Files too small to tell, or missing (the core reports those), pass as uint16."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(min(size, _DTYPE_SAMPLE_BYTES))
    except OSError:
        return
    if size % 2:
        raise config_error("sources", f"{path}: {size} bytes is not a whole number of uint16 (or uint32) "
                           "token ids: is it a token file? (a Megatron dataset is given by its prefix)")
    words = np.frombuffer(head[: len(head) // 4 * 4], dtype="<u2")
    if size % 4 == 0 and len(words) >= 2 * _DTYPE_MIN_PAIRS and words.any() and \
            int(words[1::2].max()) <= _DTYPE_MAX_HIGH_WORD:
        raise config_error("sources", f"{path} looks like uint32 token ids (in its first {len(head)} bytes every "
                           f"second 16-bit word is <= {_DTYPE_MAX_HIGH_WORD}), but a path alone is read as uint16: "
                           "give SourceConfig(paths=[...], dtype='uint32') (or dtype='uint16' if it is uint16)")


@dataclass
class LoaderConfig:
    """What to read and how to stream it.

    sources:          SourceConfig objects, dicts of their fields, or paths (see SourceConfig.from_path)
    sequence_length:  T, tokens per sequence
    batch_size:       B, sequences per batch on this rank
    rank, world_size: data-parallel position; the global batch is batch_size * world_size. None (the
                      default): from an initialised torch.distributed group, else torchrun's RANK /
                      WORLD_SIZE, else 0 of 1; a value given that disagrees with them is a ConfigError
    check_rank_environment: False: rank/world_size as given (default 0 of 1), the group and the
                      environment are not read (a loader every rank reads whole, e.g. evaluation)
    reader_count, reader_index: this process reads only the rank's global batches g with
                      g % reader_count == reader_index (set in DataLoader workers; leave at 1, 0)
    seed:             the stream (order of candidates) is a pure function of the config and seed
    shuffle:          shuffle windows/documents (False: file order)
    shuffle_block:    "jsonl"/"megatron": 0 = one global permutation of documents; B > 0 = a local
                      shuffle: blocks of B consecutive documents permuted and the documents of every
                      shuffle_span blocks in a row mixed, so reads stay near each other (a .jsonl.zst
                      frame is decompressed about once per pass instead of once per document);
                      "auto" (the default): per source, a local shuffle for .jsonl.zst (B = its documents
                      per zstd frame, spans of at most a quarter of the frames zstd_cache_bytes holds),
                      the global permutation for every other source
    shuffle_span:     blocks whose documents are mixed together (shuffle_block > 0; with "auto", at most)
    epochs:           passes over the blend; 0 = endless
    packing:          "packed" (documents joined by eos_id, cut every T tokens) or
                      "document_aligned" (every row starts a document; short tails padded with pad_id)
    eos_id, pad_id:   separator between packed documents (-1 = none), padding id
    vocab_size:       token ids must be < vocab_size (0 = not checked; else OutOfVocabError)
    bad_input:        "fail" (raise DataError naming file and line) or "skip" (count it)
    num_threads:      C++ worker threads (reading, tokenizing, assembling batches)
    prefetch_batches: batches prepared ahead of the training loop (bounds memory)
    tokenize_ahead:   "jsonl": documents tokenized ahead of packing

    Training targets (batch fields; semantics in include/groupmates/training_targets.h):
    labels:                rows read sequence_length + 1 tokens; batches carry input_ids [B, T] and
                           "labels" [B, T] (the next token, -100 where there is no target: padding,
                           and across documents with mask_across_documents) and "loss_mask" (float)
    mask_across_documents: no target where the input is eos_id (the next document's first token)
    position_ids:          "position_ids" [B, T], restarting at 0 after each eos_id (needs eos_id)
    document_boundaries:   "document_ids" [B, T] (runs of a row 0, 1, ...; -1 on padding), "cu_seqlens"
                           (int32 offsets in the flattened batch) and "max_seqlen" (needs eos_id)
    """

    sources: List[Union[SourceConfig, dict, str]] = field(default_factory=list)
    sequence_length: int = _LOADER["sequence_length"]
    batch_size: int = _LOADER["batch_size"]
    rank: Optional[int] = None        # C++ kFromEnvironment
    world_size: Optional[int] = None  # C++ kFromEnvironment
    check_rank_environment: bool = _LOADER["check_rank_environment"]
    reader_count: int = _LOADER["reader_count"]
    reader_index: int = _LOADER["reader_index"]
    seed: int = _LOADER["seed"]
    shuffle: bool = _LOADER["shuffle"]
    shuffle_block: Union[int, str] = "auto"  # C++ kShuffleBlockAuto
    shuffle_span: int = _LOADER["shuffle_span"]
    epochs: int = _LOADER["epochs"]
    packing: str = _LOADER["packing"]
    eos_id: int = _LOADER["eos_id"]
    pad_id: int = _LOADER["pad_id"]
    vocab_size: int = _LOADER["vocab_size"]
    bad_input: str = _LOADER["bad_input"]
    num_threads: int = _LOADER["num_threads"]
    prefetch_batches: int = _LOADER["prefetch_batches"]
    tokenize_ahead: int = _LOADER["tokenize_ahead"]
    labels: bool = _LOADER["labels"]
    mask_across_documents: bool = _LOADER["mask_across_documents"]
    position_ids: bool = _LOADER["position_ids"]
    document_boundaries: bool = _LOADER["document_boundaries"]

    def normalized_sources(self) -> List[SourceConfig]:
        if isinstance(self.sources, (str, os.PathLike, SourceConfig, dict)):
            items = [self.sources]
        else:
            items = list(self.sources)
        out = []
        for i, s in enumerate(items):
            if isinstance(s, SourceConfig):
                out.append(s)
            elif isinstance(s, dict):
                try:
                    out.append(SourceConfig(**s))
                except TypeError as e:
                    raise config_error(f"LoaderConfig.sources[{i}]", str(e)) from None
            elif isinstance(s, (str, os.PathLike)):
                out.append(SourceConfig.from_path(s))
            else:
                raise config_error(f"LoaderConfig.sources[{i}]",
                                   f"expected a SourceConfig, dict or path, got {type(s).__name__}")
        return out

    def to_core(self) -> "_core.LoaderConfig":
        sources = [s.to_core(f"LoaderConfig.sources[{i}]") for i, s in enumerate(self.normalized_sources())]
        ranks = {name: _core.FROM_ENVIRONMENT if getattr(self, name) is None else
                 _integer(f"LoaderConfig.{name}", getattr(self, name), "uint32") for name in ("rank", "world_size")}
        if isinstance(self.shuffle_block, str):
            if self.shuffle_block != "auto":
                raise config_error("LoaderConfig.shuffle_block", f"expected an integer >= 0 or \"auto\", got {self.shuffle_block!r}")
            ranks["shuffle_block"] = _core.SHUFFLE_BLOCK_AUTO
        return to_cpp(self, _core.LoaderConfig, "LoaderConfig", sources=sources, **ranks)

    def replace(self, **changes) -> "LoaderConfig":
        return dataclasses.replace(self, **changes)


@dataclass
class SelectionConfig:
    """How the loader selects data (needs groupmates._engine, the LibTorch extension).

    mode:                   "none" (the default: the plain stream), "random" (a seeded random `ratio`
                            of each window), "individual" (MATES: Gumbel-top-k on the predicted
                            influence), "group" (Group-MATES: influence-aware clusters, relational greedy
                            per cluster), "group_no_clusters" (relational greedy over the whole window),
                            "importance" (DSIR-style importance resampling against the reference rows of
                            GroupMatesLoader.set_reference; no probes)
    window_size:            candidates per selection window on this rank
    ratio:                  share of each window emitted, in (0, 1]
    clusters:               k of the online spherical k-means ("group")
    influence_prefilter:    "group": keep the best ratio/prefilter_ratio of the window first
    prefilter_ratio:
    merge_cluster_budgets:  "group": no quota per cluster; the best picks of all clusters' greedy orders
    nearest_pick_discount:  "group": a candidate's discount is its relation to the nearest pick (the
                            minimum r_ij) instead of the mean over the cluster's picks (the paper)
    nonpositive_influence:  "group": the greedy subtracts the maximum u of its candidates first, so every
                            a_i * u_i <= 0 and distance from the picks always helps (u has both signs)
    temperature:            "individual": Gumbel temperature (0 = deterministic top-k)
    relations:              "group": False ranks by u alone (ablation of the relational term)
    replay_share:           selection modes: this share of the emitted rows is drawn again from the replay_rows
                            best rows emitted before (by their u); the window's picks take longer to emit (0 = off);
                            "auto" (the default): 0.5 for "importance", "individual" and "group*", 0 for "none" and
                            "random", 0 on ranks sharing one model; a resumed run keeps its saved share. Part of the
                            stream: a saved state is refused under another explicit share
    replay_rows:            rows the replay buffer keeps (their tokens are in memory and in the state)
    replay_max_repeats:     a row leaves the replay buffer once replayed this often
    replay_relative_overlap: "group" with relations: the replay buffer keeps one row of a family of near-duplicates
                            (the best by u): a row is related to a kept row when at least this share of its sampled
                            shingles (seen_shingle_tokens long) are among that row's; 0 = off
    seen_discount:          "group" with relations: a candidate a share s of whose sampled token shingles this rank
                            selected before gets u (shifted to <= 0 by the window's maximum) scaled by
                            1 - seen_discount * s, as if those rows were picks (near-duplicates of what was just
                            trained fall back; 0 = off, the default: it made the tuning pools worse)
    seen_shingle_tokens:    tokens per shingle of that memory
    seen_memory_shingles:   sampled shingles remembered, up to 2^24 (~5.3 bytes each in the state, ~40 in memory)
    importance_prior:       with reference rows, u = w.h + b + gamma * (negated, window-standardised importance
                            weight); gamma learnable; before the first refresh u is the prior alone
    importance_buckets:     hashed token 1-2-gram buckets of the importance estimator
    importance_mix:         reference distribution smoothed toward the pool's (mix * p_ref + (1 - mix) * p_pool)
    reference_feedback:     share of p_ref taken by rows the probes measured to lower the reference loss most (0 = off)
    reference_feedback_share: share of each probe's steps (best labels per rollout position) fed back
    refresh_mode:           "when_ready" (a refreshed model scores from the next window boundary after it is
                            ready; the trainer never waits; switches are recorded) or "at_step" (from probe step
                            + effect_delay_steps, waiting for it: the stream is timing-free)
    encoder:                "hashed_ngram" (the default: hashed n-gram bag + MLP, the encoder_* sizes below),
                            "torchscript" (the module file encoder_path: forward(ids int64 [rows, T][, mask
                            int64 [rows, T]]) -> float [rows, D], frozen; D read from a probe forward), or a
                            torch.nn.Module: scripted (else traced) once when the config is converted and run by
                            the engine as TorchScript (groupmates/encoders.py); recorded with the state and the
                            model weights: a resume with another encoder (or other module weights) is refused
    encoder_path:           "torchscript": the module file ("" otherwise)
    encoder_buckets, encoder_dim: hashed n-gram encoder buckets and embedding width
    encoder_bag_dim:        width of the (fixed, random) n-gram table rows
    encoder_max_ngram:      n-grams of 1..encoder_max_ngram tokens (1..3)
    refresh_train_steps:    influence-model optimiser steps after each probe
    refresh_batch_rollouts: rollouts per influence-model step
    refresh_learning_rate:
    heap_release_interval_seconds: at most this often, after a refresh, hand glibc's free heap pages back to the
                            OS (malloc_trim): keeps RSS from creeping up over a long run (0 = never)
    refresh_gate:           publish a refreshed model only while learned models predict each new probe (held
                            out) better than the prior-only model, by mean Spearman so far; else the prior selects
    refresh_gate_margin:    standard errors (1 / sqrt(held-out labels so far)) by which the learned model must lead
    refresh_gate_top_share: 0: the gate compares held-out Spearman; in (0, 1]: the mean standardised measured label
                            of each model's best top_share of the held-out rows (the picks it would make)
    refresh_head_shrinkage: a published model carries share s in {0, 1/4, 1/2, 1} of its learned head (u = s (w.h
                            + b) + gamma * prior), the share that predicted the held-out probes best so far; False: s = 1
    refresh_head_share_start: s before the first held-out check, in [0, 1] (0: the prior with the learned gamma)
    robust_label_scaling:   standardise labels by median/MAD (else mean/std)
    per_position_labels:    standardise per probe and rollout position (else per probe)
    relation_tau:           initial relational temperature tau, r_ij = alpha (1 - cos_ij / tau); larger = a milder
                            discount (single-step probes never train it)
    relation_tau_min:       lower bound of the relational temperature tau (0 = unconstrained)
    train_ngram_table:      refreshes also train the encoder's hashed n-gram table
    label_buffer_rollouts:  recent rollouts kept for training the influence model
    seed:
    log_path:               JSONL log of every emitted candidate ("" = none)
    max_window_memory_bytes: bound on the selection windows' estimated memory (window_size x (row length x
                            8 x (prefetch_batches + 4) + the scorer's floats)), checked when the loader
                            starts; raise it to allow a bigger window
    """

    mode: str = _SELECTION["mode"]
    window_size: int = _SELECTION["window_size"]
    ratio: float = _SELECTION["ratio"]
    clusters: int = _SELECTION["clusters"]
    influence_prefilter: bool = _SELECTION["influence_prefilter"]
    prefilter_ratio: float = _SELECTION["prefilter_ratio"]
    merge_cluster_budgets: bool = _SELECTION["merge_cluster_budgets"]
    nearest_pick_discount: bool = _SELECTION["nearest_pick_discount"]
    nonpositive_influence: bool = _SELECTION["nonpositive_influence"]
    temperature: float = _SELECTION["temperature"]
    relations: bool = _SELECTION["relations"]
    replay_share: Union[float, str] = "auto"  # C++ kReplayShareAuto
    replay_rows: int = _SELECTION["replay_rows"]
    replay_max_repeats: int = _SELECTION["replay_max_repeats"]
    replay_relative_overlap: float = _SELECTION["replay_relative_overlap"]
    seen_discount: float = _SELECTION["seen_discount"]
    seen_shingle_tokens: int = _SELECTION["seen_shingle_tokens"]
    seen_memory_shingles: int = _SELECTION["seen_memory_shingles"]
    importance_prior: bool = _SELECTION["importance_prior"]
    importance_buckets: int = _SELECTION["importance_buckets"]
    importance_mix: float = _SELECTION["importance_mix"]
    reference_feedback: float = _SELECTION["reference_feedback"]
    reference_feedback_share: float = _SELECTION["reference_feedback_share"]
    refresh_mode: str = _SELECTION["refresh_mode"]
    encoder: Any = _SELECTION["encoder"]  # str, or a torch.nn.Module
    encoder_path: str = _SELECTION["encoder_path"]
    encoder_buckets: int = _SELECTION["encoder_buckets"]
    encoder_dim: int = _SELECTION["encoder_dim"]
    encoder_bag_dim: int = _SELECTION["encoder_bag_dim"]
    encoder_max_ngram: int = _SELECTION["encoder_max_ngram"]
    refresh_train_steps: int = _SELECTION["refresh_train_steps"]
    refresh_batch_rollouts: int = _SELECTION["refresh_batch_rollouts"]
    refresh_learning_rate: float = _SELECTION["refresh_learning_rate"]
    heap_release_interval_seconds: float = _SELECTION["heap_release_interval_seconds"]
    refresh_gate: bool = _SELECTION["refresh_gate"]
    refresh_gate_margin: float = _SELECTION["refresh_gate_margin"]
    refresh_gate_top_share: float = _SELECTION["refresh_gate_top_share"]
    refresh_head_shrinkage: bool = _SELECTION["refresh_head_shrinkage"]
    refresh_head_share_start: float = _SELECTION["refresh_head_share_start"]
    robust_label_scaling: bool = _SELECTION["robust_label_scaling"]
    per_position_labels: bool = _SELECTION["per_position_labels"]
    relation_tau: float = _SELECTION["relation_tau"]
    relation_tau_min: float = _SELECTION["relation_tau_min"]
    train_ngram_table: bool = _SELECTION["train_ngram_table"]
    label_buffer_rollouts: int = _SELECTION["label_buffer_rollouts"]
    seed: int = _SELECTION["seed"]
    log_path: str = _SELECTION["log_path"]
    max_window_memory_bytes: int = _SELECTION["max_window_memory_bytes"]

    def to_core(self) -> "_core.SelectionConfig":
        replay = {}
        if isinstance(self.replay_share, str):
            if self.replay_share != "auto":
                raise config_error("SelectionConfig.replay_share",
                                   f"expected a number in [0, 0.9] or \"auto\", got {self.replay_share!r}")
            replay["replay_share"] = _core.REPLAY_SHARE_AUTO
        if isinstance(self.encoder, (str, _core.EncoderKind)):
            return to_cpp(self, _core.SelectionConfig, "SelectionConfig", **replay)
        if self.encoder_path:
            raise config_error("SelectionConfig.encoder_path", f"is {self.encoder_path!r} but encoder is a "
                               f"{type(self.encoder).__name__} module: give one or the other")
        from .encoders import encoder_file
        return to_cpp(self, _core.SelectionConfig, "SelectionConfig", encoder=_core.EncoderKind.torchscript,
                      encoder_path=encoder_file(self.encoder), **replay)


@dataclass
class ProbeConfig:
    """Oracle probes of the live model (run when on_step() gets a model: in slices inside on_step, or on a probe thread).

    interval_steps:     probe at steps first_step, first_step + interval, ...; 0 = never
    first_step:
    rollout_length:     L optimizer steps per rollout
    random_rollouts:    per probe
    neighbour_rollouts: per probe, of same-cluster candidates
    bootstrap_pairs:    per probe once a trained influence model exists (best + worst)
    lr_scale:           probes step with lr * lr_scale
    first_order_labels: a label = <reference gradient at the snapshot, the step's weight change> instead of an
                        evaluation of the reference batches after each step (cheaper labels; docs/PROBE_LABELS.md)
    pool_rows:          candidates of the current window offered to a probe
    effect_delay_steps: a model refreshed from the probe at step s scores windows from step s + delay
    max_seconds:        cap on one probe's rollouts (0 = none)
    budget:             probe FLOPs kept within this share of the training FLOPs so far (0 = no cap)
    min_rollouts:       fewest rollouts worth a probe under the budget (else the probe is skipped)
    gated_backoff_max:  while the refresh gate keeps refusing learned models, skip up to this many due probes
                        (2^n - 1 after n refusals in a row; 0 = never back off)
    timeout_seconds:    a probe still running after this long is abandoned (counted in probes_timed_out; its
                        thread finishes on its own, its rollouts are dropped); 0 = no timeout
    nice:               the probe thread's nice value above the training thread's (Linux, 0..19; higher = the
                        trainer's threads run first and the probe takes the idle time)
    trainer_thread_rollouts: > 0: probes run on the training thread in slices inside on_step (this many rollouts
                        a step; no probe thread competing for the cores; a probe ends at a step timing cannot
                        change); 0: a probe thread (nice and timeout_seconds apply only then)
    max_consecutive_failures: this many failed probes / refreshes in a row (an exception, a timeout, a
                        non-finite refresh) and the next batch raises SelectionError; 0 = never raise
    """

    interval_steps: int = _PROBES["interval_steps"]
    first_step: int = _PROBES["first_step"]
    rollout_length: int = _PROBES["rollout_length"]
    random_rollouts: int = _PROBES["random_rollouts"]
    neighbour_rollouts: int = _PROBES["neighbour_rollouts"]
    bootstrap_pairs: int = _PROBES["bootstrap_pairs"]
    lr_scale: float = _PROBES["lr_scale"]
    first_order_labels: bool = _PROBES["first_order_labels"]
    pool_rows: int = _PROBES["pool_rows"]
    effect_delay_steps: int = _PROBES["effect_delay_steps"]
    max_seconds: float = _PROBES["max_seconds"]
    budget: float = _PROBES["budget"]
    min_rollouts: int = _PROBES["min_rollouts"]
    gated_backoff_max: int = _PROBES["gated_backoff_max"]
    timeout_seconds: float = _PROBES["timeout_seconds"]
    nice: int = _PROBES["nice"]
    trainer_thread_rollouts: int = _PROBES["trainer_thread_rollouts"]
    max_consecutive_failures: int = _PROBES["max_consecutive_failures"]

    def to_core(self) -> "_core.ProbeConfig":
        return to_cpp(self, _core.ProbeConfig, "ProbeConfig")


# Each Python config class and the bound C++ struct it converts to.
CPP_STRUCTS = {SourceConfig: _core.SourceConfig, LoaderConfig: _core.LoaderConfig,
               SelectionConfig: _core.SelectionConfig, ProbeConfig: _core.ProbeConfig}


def as_config(cls, value, what):
    """A cls from a cls, a dict of its fields, None (defaults) or (SelectionConfig) a mode string."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if cls is SelectionConfig and isinstance(value, str):
        return SelectionConfig(mode=value)
    if isinstance(value, dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise config_error(f"{cls.__name__}.{unknown[0]}", f"unknown field; the fields are {sorted(known)}")
        return cls(**value)
    raise config_error(what, f"expected a groupmates.{cls.__name__} or a dict of its fields, got {type(value).__name__}")


# ---- conversion to the C++ structs, by the C++ kind of each field ----------------------------------

def to_cpp(obj, cpp_cls, who, **converted):
    """The C++ struct of `obj`: every field of cpp_cls._fields taken from `obj` and checked against
    its C++ kind (fields of kind "object" must be given already converted, as keywords)."""
    c = cpp_cls()
    for name, kind in cpp_cls._fields:
        where = f"{who}.{name}"
        if name in converted:
            value = converted[name]
        elif kind == "enum":
            value = _enum(type(getattr(c, name)), where, getattr(obj, name))
        elif kind == "object":
            raise TypeError(f"groupmates: {where} (a list or struct) must be converted by the caller")
        else:
            value = _SCALARS[kind.rstrip("0123456789")](where, getattr(obj, name), kind)
        setattr(c, name, value)
    return c


def _enum(enum_type, field_name, value):
    if isinstance(value, enum_type):
        return value
    names = list(enum_type.__members__)
    if isinstance(value, str) and value in enum_type.__members__:
        return enum_type.__members__[value]
    raise config_error(field_name, f"{value!r} is not one of {names}")


def _integer(field_name, value, kind):
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np
            if isinstance(value, np.integer):
                value = int(value)
        except ImportError:
            pass
    if isinstance(value, bool) or not isinstance(value, int):
        raise config_error(field_name, f"expected an integer, got {value!r}")
    unsigned = kind.startswith("uint")
    bits = int(kind[len("uint" if unsigned else "int"):])
    if unsigned:
        if not 0 <= value < 1 << bits:
            raise config_error(field_name, f"{value} is outside [0, 2^{bits})")
    elif not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        raise config_error(field_name, f"{value} does not fit in int{bits}")
    return value


def _number(field_name, value, kind=None):
    if isinstance(value, bool):
        raise config_error(field_name, f"expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise config_error(field_name, f"expected a number, got {value!r}") from None


def _string(field_name, value, kind=None):
    return os.fspath(value) if isinstance(value, os.PathLike) else str(value)


_SCALARS = {"bool": lambda field_name, value, kind: bool(value), "int": _integer, "uint": _integer,
            "float": _number, "str": _string}
