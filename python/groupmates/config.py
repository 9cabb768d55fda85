"""Configuration dataclasses, mirroring groupmates/config.h (validated by the C++ core, which
raises ConfigError naming the bad field)."""
import dataclasses
import os
from dataclasses import dataclass, field
from typing import List, Sequence, Union

from . import _core
from .errors import config_error


@dataclass
class SourceConfig:
    """One data source: files of one format, blended with the other sources by weight.

    paths:           files ("token_file", "jsonl") or prefixes without .bin/.idx ("megatron")
    format:          "token_file" (flat little-endian ids, no header), "megatron" (MMIDIDX) or
                     "jsonl" (.jsonl or .jsonl.zst, text tokenized with SentencePiece)
    name:            label in ids, logs and counters (default "source<i>")
    dtype:           "uint16" or "uint32" ("token_file" only)
    weight:          blend weight > 0 (normalised over sources)
    on_exhausted:    "end" (the pass ends) or "recycle" (reshuffle and go on)
    text_field:      "jsonl": the string field holding the document
    tokenizer_model: "jsonl": the SentencePiece .model file
    """

    paths: Union[str, Sequence[str]]
    format: str = "token_file"
    name: str = ""
    dtype: str = "uint16"
    weight: float = 1.0
    on_exhausted: str = "end"
    text_field: str = "text"
    tokenizer_model: str = ""

    @staticmethod
    def from_path(path: str) -> "SourceConfig":
        """A source for one path, its format guessed from the name: *.jsonl[.zst] is "jsonl",
        a prefix with PREFIX.idx is "megatron", anything else a uint16 "token_file"."""
        p = os.fspath(path)
        if p.endswith(".jsonl") or p.endswith(".jsonl.zst"):
            return SourceConfig(paths=[p], format="jsonl")
        if os.path.exists(p + ".idx") and os.path.exists(p + ".bin"):
            return SourceConfig(paths=[p], format="megatron")
        return SourceConfig(paths=[p])


@dataclass
class LoaderConfig:
    """What to read and how to stream it.

    sources:          SourceConfig objects, dicts of their fields, or paths (see SourceConfig.from_path)
    sequence_length:  T, tokens per sequence
    batch_size:       B, sequences per batch on this rank
    rank, world_size: data-parallel position; the global batch is batch_size * world_size
    seed:             the stream (order of candidates) is a pure function of the config and seed
    shuffle:          shuffle windows/documents (False: file order)
    epochs:           passes over the blend; 0 = endless
    packing:          "packed" (documents joined by eos_id, cut every T tokens) or
                      "document_aligned" (every row starts a document; short tails padded with pad_id)
    eos_id, pad_id:   separator between packed documents (-1 = none), padding id
    vocab_size:       token ids must be < vocab_size (0 = not checked; else OutOfVocabError)
    bad_input:        "fail" (raise DataError naming file and line) or "skip" (count it)
    num_threads:      C++ worker threads (reading, tokenizing, assembling batches)
    prefetch_batches: batches prepared ahead of the training loop (bounds memory)
    tokenize_ahead:   "jsonl": documents tokenized ahead of packing
    """

    sources: List[Union[SourceConfig, dict, str]] = field(default_factory=list)
    sequence_length: int = 1024
    batch_size: int = 16
    rank: int = 0
    world_size: int = 1
    seed: int = 0
    shuffle: bool = True
    epochs: int = 1
    packing: str = "packed"
    eos_id: int = -1
    pad_id: int = 0
    vocab_size: int = 0
    bad_input: str = "fail"
    num_threads: int = 2
    prefetch_batches: int = 4
    tokenize_ahead: int = 256

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
        c = _core.LoaderConfig()
        c.sources = [_source_to_core(s, i) for i, s in enumerate(self.normalized_sources())]
        for name in ("sequence_length", "batch_size", "rank", "world_size", "epochs", "num_threads",
                     "prefetch_batches", "tokenize_ahead"):
            setattr(c, name, _unsigned(f"LoaderConfig.{name}", getattr(self, name), 32))
        for name in ("seed", "vocab_size"):
            setattr(c, name, _unsigned(f"LoaderConfig.{name}", getattr(self, name), 64))
        for name in ("eos_id", "pad_id"):
            v = _integer(f"LoaderConfig.{name}", getattr(self, name))
            if not -(1 << 63) <= v < 1 << 63:
                raise config_error(f"LoaderConfig.{name}", f"{v} does not fit in int64")
            setattr(c, name, v)
        c.shuffle = bool(self.shuffle)
        c.packing = _enum(_core.PackingMode, "LoaderConfig.packing", self.packing)
        c.bad_input = _enum(_core.BadInputPolicy, "LoaderConfig.bad_input", self.bad_input)
        return c

    def replace(self, **changes) -> "LoaderConfig":
        return dataclasses.replace(self, **changes)


def _source_to_core(s: SourceConfig, i: int) -> "_core.SourceConfig":
    who = f"LoaderConfig.sources[{i}]"
    c = _core.SourceConfig()
    c.name = str(s.name)
    c.format = _enum(_core.SourceFormat, f"{who}.format", s.format)
    paths = [s.paths] if isinstance(s.paths, (str, os.PathLike)) else list(s.paths)
    c.paths = [os.fspath(p) for p in paths]
    c.dtype = _enum(_core.TokenDtype, f"{who}.dtype", s.dtype)
    try:
        c.weight = float(s.weight)
    except (TypeError, ValueError):
        raise config_error(f"{who}.weight", f"expected a number, got {s.weight!r}") from None
    c.on_exhausted = _enum(_core.OnExhausted, f"{who}.on_exhausted", s.on_exhausted)
    c.text_field = str(s.text_field)
    c.tokenizer_model = os.fspath(s.tokenizer_model)
    return c


def _enum(enum_type, field_name, value):
    if isinstance(value, enum_type):
        return value
    names = list(enum_type.__members__)
    if isinstance(value, str) and value in enum_type.__members__:
        return enum_type.__members__[value]
    raise config_error(field_name, f"{value!r} is not one of {names}")


def _integer(field_name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np
            if isinstance(value, np.integer):
                return int(value)
        except ImportError:
            pass
        raise config_error(field_name, f"expected an integer, got {value!r}")
    return value


def _unsigned(field_name, value, bits):
    v = _integer(field_name, value)
    if v < 0 or v >= 1 << bits:
        raise config_error(field_name, f"{v} is outside [0, 2^{bits})")
    return v


# ---- selection and probes (groupmates._engine; mirror include/groupmates/selection_config.h) ----

_SELECTION_MODES = ("none", "random", "individual", "group", "group_no_clusters", "importance")
_REFRESH_MODES = ("when_ready", "at_step")


@dataclass
class SelectionConfig:
    """How the loader selects data (needs groupmates._engine, the LibTorch extension).

    mode:                   "none" (plain stream), "random" (a seeded random `ratio` of each window),
                            "individual" (MATES: Gumbel-top-k on the predicted influence),
                            "group" (Group-MATES: influence-aware clusters, relational greedy per cluster),
                            "group_no_clusters" (relational greedy over the whole window),
                            "importance" (DSIR-style importance resampling against the reference rows of
                            GroupMatesLoader.set_reference; no probes)
    window_size:            candidates per selection window on this rank
    ratio:                  share of each window emitted, in (0, 1]
    clusters:               k of the online spherical k-means ("group")
    influence_prefilter:    "group": keep the best ratio/prefilter_ratio of the window first
    prefilter_ratio:
    nearest_pick_discount:  "group": a candidate's discount is its relation to the nearest pick (the
                            minimum r_ij) instead of the mean over the cluster's picks (the paper)
    temperature:            "individual": Gumbel temperature (0 = deterministic top-k)
    relations:              "group": False ranks by u alone (ablation of the relational term)
    merge_cluster_budgets:  "group": no quota per cluster; the best picks of all clusters' greedy orders
    importance_prior:       with reference rows, u = w.h + b + gamma * (negated, window-standardised importance
                            weight); gamma learnable; before the first refresh u is the prior alone
    importance_buckets:     hashed token 1-2-gram buckets of the importance estimator
    importance_mix:         reference distribution smoothed toward the pool's (mix * p_ref + (1 - mix) * p_pool)
    refresh_mode:           "when_ready" (a refreshed model scores from the next window boundary after it is
                            ready; the trainer never waits; switches are recorded) or "at_step" (from probe step
                            + effect_delay_steps, waiting for it: the stream is timing-free)
    encoder_buckets, encoder_dim: hashed n-gram encoder buckets and embedding width
    encoder_bag_dim:        width of the (fixed, random) n-gram table rows
    encoder_max_ngram:      n-grams of 1..encoder_max_ngram tokens (1..3)
    refresh_train_steps:    influence-model optimiser steps after each probe
    refresh_batch_rollouts: rollouts per influence-model step
    refresh_learning_rate:
    robust_label_scaling:   standardise labels by median/MAD (else mean/std)
    per_position_labels:    standardise per probe and rollout position (else per probe)
    relation_tau_min:       lower bound of the relational temperature tau (0 = unconstrained)
    train_ngram_table:      refreshes also train the encoder's hashed n-gram table
    label_buffer_rollouts:  recent rollouts kept for training the influence model
    seed:
    log_path:               JSONL log of every emitted candidate ("" = none)
    """

    mode: str = "group"
    window_size: int = 512
    ratio: float = 0.5
    clusters: int = 8
    influence_prefilter: bool = True
    prefilter_ratio: float = 0.8
    nearest_pick_discount: bool = True
    temperature: float = 0.5
    relations: bool = True
    merge_cluster_budgets: bool = True
    importance_prior: bool = True
    importance_buckets: int = 1 << 14
    importance_mix: float = 0.5
    refresh_mode: str = "when_ready"
    encoder_buckets: int = 1 << 14
    encoder_dim: int = 64
    encoder_bag_dim: int = 256
    encoder_max_ngram: int = 2
    refresh_train_steps: int = 150
    refresh_batch_rollouts: int = 16
    refresh_learning_rate: float = 3e-3
    robust_label_scaling: bool = True
    per_position_labels: bool = True
    relation_tau_min: float = 1.0
    train_ngram_table: bool = False
    label_buffer_rollouts: int = 1024
    seed: int = 0
    log_path: str = ""

    def to_engine(self, engine):
        c = engine.SelectionConfig()
        c.mode = _enum(engine.SelectionMode, "SelectionConfig.mode", self.mode)
        for name in ("window_size", "clusters", "refresh_train_steps", "refresh_batch_rollouts",
                     "label_buffer_rollouts"):
            setattr(c, name, _unsigned(f"SelectionConfig.{name}", getattr(self, name), 32))
        c.seed = _unsigned("SelectionConfig.seed", self.seed, 64)
        c.encoder_max_ngram = _unsigned("SelectionConfig.encoder_max_ngram", self.encoder_max_ngram, 31)
        c.refresh_mode = _enum(engine.RefreshMode, "SelectionConfig.refresh_mode", self.refresh_mode)
        for name in ("encoder_buckets", "encoder_dim", "encoder_bag_dim", "importance_buckets"):
            setattr(c, name, _unsigned(f"SelectionConfig.{name}", getattr(self, name), 63))
        for name in ("ratio", "prefilter_ratio", "temperature", "refresh_learning_rate", "relation_tau_min",
                     "importance_mix"):
            setattr(c, name, _number(f"SelectionConfig.{name}", getattr(self, name)))
        c.influence_prefilter = bool(self.influence_prefilter)
        c.nearest_pick_discount = bool(self.nearest_pick_discount)
        c.relations = bool(self.relations)
        c.merge_cluster_budgets = bool(self.merge_cluster_budgets)
        c.importance_prior = bool(self.importance_prior)
        c.robust_label_scaling = bool(self.robust_label_scaling)
        c.per_position_labels = bool(self.per_position_labels)
        c.train_ngram_table = bool(self.train_ngram_table)
        c.log_path = os.fspath(self.log_path)
        return c


@dataclass
class ProbeConfig:
    """Oracle probes of the live model (run when on_step() gets a model, on the C++ probe thread).

    interval_steps:     probe at steps first_step, first_step + interval, ...; 0 = never
    first_step:
    rollout_length:     L optimizer steps per rollout
    random_rollouts:    per probe
    neighbour_rollouts: per probe, of same-cluster candidates
    bootstrap_pairs:    per probe once a trained influence model exists (best + worst)
    lr_scale:           probes step with lr * lr_scale
    pool_rows:          candidates of the current window offered to a probe
    effect_delay_steps: a model refreshed from the probe at step s scores windows from step s + delay
    max_seconds:        cap on one probe's rollouts (0 = none)
    budget:             probe FLOPs kept within this share of the training FLOPs so far (0 = no cap)
    min_rollouts:       fewest rollouts worth a probe under the budget (else the probe is skipped)
    """

    interval_steps: int = 100
    first_step: int = 0
    rollout_length: int = 4
    random_rollouts: int = 12
    neighbour_rollouts: int = 12
    bootstrap_pairs: int = 2
    lr_scale: float = 0.3
    pool_rows: int = 256
    effect_delay_steps: int = 50
    max_seconds: float = 0.0
    budget: float = 0.25
    min_rollouts: int = 4

    def to_engine(self, engine):
        c = engine.ProbeConfig()
        for name in ("interval_steps", "first_step", "rollout_length", "random_rollouts", "neighbour_rollouts",
                     "bootstrap_pairs", "pool_rows", "effect_delay_steps", "min_rollouts"):
            setattr(c, name, _unsigned(f"ProbeConfig.{name}", getattr(self, name), 32))
        for name in ("lr_scale", "max_seconds", "budget"):
            setattr(c, name, _number(f"ProbeConfig.{name}", getattr(self, name)))
        return c


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


def _number(field_name, value):
    if isinstance(value, bool):
        raise config_error(field_name, f"expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise config_error(field_name, f"expected a number, got {value!r}") from None
