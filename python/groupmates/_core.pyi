# Stubs of groupmates._core (python/src/core.cpp): the LibTorch-free streaming core and the bound
# config and stats structs. tests/python/test_stubs.py checks these names against the module.
from typing import Any, ClassVar, Dict, List, Optional, Tuple

import numpy as np
import numpy.typing as npt

IGNORE_INDEX: int
FROM_ENVIRONMENT: int
SHUFFLE_BLOCK_AUTO: int
REPLAY_SHARE_AUTO: float
LOADER_EOS_ID: int

class _StubEnum:
    name: str
    value: int
    __members__: ClassVar[Dict[str, Any]]
    def __init__(self, value: int) -> None: ...
    def __int__(self) -> int: ...

class SourceFormat(_StubEnum):
    token_file: ClassVar[SourceFormat]
    megatron: ClassVar[SourceFormat]
    jsonl: ClassVar[SourceFormat]

class TokenDtype(_StubEnum):
    uint16: ClassVar[TokenDtype]
    uint32: ClassVar[TokenDtype]

class OnExhausted(_StubEnum):
    end: ClassVar[OnExhausted]
    recycle: ClassVar[OnExhausted]

class BadInputPolicy(_StubEnum):
    fail: ClassVar[BadInputPolicy]
    skip: ClassVar[BadInputPolicy]

class PackingMode(_StubEnum):
    packed: ClassVar[PackingMode]
    document_aligned: ClassVar[PackingMode]

class SelectionMode(_StubEnum):
    none: ClassVar[SelectionMode]
    random: ClassVar[SelectionMode]
    individual: ClassVar[SelectionMode]
    group: ClassVar[SelectionMode]
    group_no_clusters: ClassVar[SelectionMode]
    importance: ClassVar[SelectionMode]

class RefreshMode(_StubEnum):
    when_ready: ClassVar[RefreshMode]
    at_step: ClassVar[RefreshMode]

class EncoderKind(_StubEnum):
    hashed_ngram: ClassVar[EncoderKind]
    torchscript: ClassVar[EncoderKind]

class _StubStruct:
    _fields: ClassVar[Tuple[Tuple[str, str], ...]]
    def __init__(self) -> None: ...

class SourceConfig(_StubStruct):
    name: str
    format: SourceFormat
    paths: List[str]
    dtype: TokenDtype
    weight: float
    on_exhausted: OnExhausted
    text_field: str
    tokenizer_model: str
    append_eos: bool
    eos_id: int
    max_line_bytes: int
    zstd_cache_bytes: int
    index_cache: bool
    index_cache_dir: str

class LoaderConfig(_StubStruct):
    sources: List[SourceConfig]
    sequence_length: int
    batch_size: int
    rank: int
    world_size: int
    check_rank_environment: bool
    reader_count: int
    reader_index: int
    seed: int
    shuffle: bool
    shuffle_block: int
    shuffle_span: int
    epochs: int
    packing: PackingMode
    eos_id: int
    pad_id: int
    vocab_size: int
    bad_input: BadInputPolicy
    num_threads: int
    prefetch_batches: int
    tokenize_ahead: int
    labels: bool
    mask_across_documents: bool
    position_ids: bool
    document_boundaries: bool
    def validate(self) -> None: ...

class SelectionConfig(_StubStruct):
    mode: SelectionMode
    window_size: int
    ratio: float
    clusters: int
    influence_prefilter: bool
    prefilter_ratio: float
    merge_cluster_budgets: bool
    nearest_pick_discount: bool
    nonpositive_influence: bool
    temperature: float
    relations: bool
    replay_share: float
    replay_rows: int
    replay_max_repeats: int
    replay_relative_overlap: float
    seen_discount: float
    seen_shingle_tokens: int
    seen_memory_shingles: int
    importance_prior: bool
    importance_buckets: int
    importance_mix: float
    reference_feedback: float
    reference_feedback_share: float
    refresh_mode: RefreshMode
    encoder: EncoderKind
    encoder_path: str
    encoder_buckets: int
    encoder_dim: int
    encoder_bag_dim: int
    encoder_max_ngram: int
    refresh_train_steps: int
    refresh_batch_rollouts: int
    refresh_learning_rate: float
    heap_release_interval_seconds: float
    refresh_gate: bool
    refresh_gate_margin: float
    refresh_gate_top_share: float
    refresh_head_shrinkage: bool
    refresh_head_share_start: float
    robust_label_scaling: bool
    per_position_labels: bool
    relation_tau: float
    relation_tau_min: float
    train_ngram_table: bool
    label_buffer_rollouts: int
    seed: int
    log_path: str
    max_window_memory_bytes: int

class ProbeConfig(_StubStruct):
    interval_steps: int
    first_step: int
    rollout_length: int
    random_rollouts: int
    neighbour_rollouts: int
    bootstrap_pairs: int
    lr_scale: float
    first_order_labels: bool
    pool_rows: int
    effect_delay_steps: int
    max_seconds: float
    budget: float
    min_rollouts: int
    gated_backoff_max: int
    timeout_seconds: float
    nice: int
    trainer_thread_rollouts: int
    max_consecutive_failures: int

class LoaderStats(_StubStruct):
    batches: int
    buffers_allocated: int
    consumer_wait_seconds: float
    batches_in_flight: int
    line_index_cache_hits: int
    line_index_cache_misses: int
    zstd_frame_cache_hits: int
    zstd_frame_cache_misses: int
    zstd_frame_cache_bytes: int

class ProbeStats(_StubStruct):
    probes_started: int
    probes_completed: int
    probes_skipped_busy: int
    probes_failed: int
    probes_timed_out: int
    rollouts_kept: int
    rollouts_discarded: int
    rollouts_skipped: int
    snapshot_seconds: float
    probe_seconds: float
    wall_seconds: float
    probe_share: float
    snapshot_share: float
    seconds_per_rollout: float
    last_probe_step: int
    last_error: str

class SelectionCost(_StubStruct):
    flops_per_token: float
    train_tokens: int
    probe_train_tokens: float
    probe_eval_tokens: float
    train_flops: float
    probe_flops: float
    refresh_flops: float
    scoring_flops: float
    scoring_seconds: float
    selection_seconds: float
    wait_scoring_seconds: float
    wait_refresh_seconds: float
    wait_probe_seconds: float
    snapshot_seconds: float
    probe_slice_seconds: float

class VersionSwitch(_StubStruct):
    window: int
    probe_step: int
    version: int

class SelectionStats(_StubStruct):
    windows: int
    warmup_windows: int
    seen: int
    selected: int
    seen_per_cluster: List[int]
    selected_per_cluster: List[int]
    model_version: int
    refreshes: int
    refresh_seconds: float
    refresh_wait_seconds: float
    heap_releases: int
    heap_release_seconds: float
    last_heldout_spearman: float
    last_heldout_spearman_scaled: float
    last_heldout_spearman_prior: float
    last_heldout_spearman_unshrunk: float
    head_share: float
    head_share_scores: list[float]
    refreshes_gated: int
    probes: ProbeStats
    cost: SelectionCost
    probes_skipped_budget: int
    probes_skipped_backoff: int
    refreshes_failed: int
    refreshes_rejected_nonfinite: int
    last_refresh_error: str
    consecutive_failures: int
    prior_weight: float
    switches: List[VersionSwitch]
    replayed: int
    replay_relatives: int
    seen_discounted: int
    resume_dropped_rows: int
    resume_dropped_probes: int
    label_buffer_rollouts: int
    versions_held: int
    refreshes_pending: int
    replay_rows: int
    model_hash: int
    centroids_hash: int
    labels_hash: int
    shared_rollouts: int
    shared_bytes: int

class Loader:
    """The plain StreamingLoader; batches are dicts of numpy arrays (binding_common.h batch_dict)."""
    def __init__(self, config: LoaderConfig, state: Optional[str] = None, host_register: int = 0,
                 host_unregister: int = 0, set_device: int = 0, get_device: int = 0, device: int = -1) -> None: ...
    def pinning(self) -> Dict[str, int]: ...
    def next(self, candidates: bool = False) -> Optional[Dict[str, Any]]: ...
    def skip(self, n: int) -> int: ...
    def state(self) -> Tuple[str, int]: ...
    def batches(self) -> int: ...
    def stats(self) -> Dict[str, Any]: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def abandon(self) -> None: ...

class Tokenizer:
    @staticmethod
    def load(model_path: str) -> Tokenizer: ...
    def encode(self, text: str) -> List[int]: ...
    def decode(self, ids: List[int]) -> str: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def eos_id(self) -> int: ...
    @staticmethod
    def shim_path() -> str: ...

def _register_errors(classes: Dict[str, type]) -> None: ...
def resolve_ranks(config: LoaderConfig) -> Tuple[int, int]: ...
def _training_targets(rows: npt.NDArray[np.int64], config: LoaderConfig) -> Dict[str, Any]: ...
