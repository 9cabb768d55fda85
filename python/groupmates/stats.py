"""Typed stats: the C++ SelectionStats, ProbeStats, SelectionCost, VersionSwitch
(include/groupmates/selection_stats.h) and LoaderStats (streaming_loader.h) as frozen dataclasses,
field for field (tests/python/test_stats.py checks the names against the bindings).

They still read like the dicts they replace (``s["probes"]["probe_share"]``, ``set(s)``,
``dict(s)``): each is a read-only Mapping of its fields. ``metrics()`` flattens what a metrics
tool wants (TensorBoard's add_scalar, wandb.log) into {"name": float}."""
import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional


class _Record(Mapping):
    """Dict-style reading of a dataclass's fields."""

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    @classmethod
    def _names(cls) -> List[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def as_dict(self) -> Dict[str, Any]:
        """Plain nested dicts and lists (e.g. for json.dumps)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]):
        """From the dict the C++ bindings give. A key the class lacks (the C++ struct gained a field
        and stats.py was not updated; tests/python/test_stats.py fails then) is left out with a
        warning, so training goes on."""
        kinds = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(kinds))
        if unknown:
            warnings.warn(f"groupmates: {cls.__name__} fields {unknown} of the C++ struct are not in "
                          "groupmates/stats.py (left out)", stacklevel=3)
        return cls(**{k: _convert(kinds[k], v) for k, v in d.items() if k in kinds})


def _convert(f, value):
    nested = _NESTED.get(f.name)
    if nested is None:
        return value
    if isinstance(value, list):
        return [nested.from_dict(v) if isinstance(v, dict) else v for v in value]
    return nested.from_dict(value) if isinstance(value, dict) else value


@dataclass(frozen=True)
class ProbeStats(_Record):
    """Oracle probes so far (C++ ProbeStats); last_error: why the last probe failed or timed out, else the
    last Python exception of a probe callback."""
    probes_started: int = 0
    probes_completed: int = 0
    probes_skipped_busy: int = 0
    probes_failed: int = 0
    probes_timed_out: int = 0
    rollouts_kept: int = 0
    rollouts_discarded: int = 0
    rollouts_skipped: int = 0
    snapshot_seconds: float = 0.0
    probe_seconds: float = 0.0
    wall_seconds: float = 0.0
    probe_share: float = 0.0
    snapshot_share: float = 0.0
    seconds_per_rollout: float = 0.0
    last_probe_step: int = -1
    last_error: str = ""


@dataclass(frozen=True)
class SelectionCost(_Record):
    """FLOPs and seconds selection cost so far (C++ SelectionCost; ALGORITHM.md section 7)."""
    flops_per_token: float = 0.0
    train_tokens: int = 0
    probe_train_tokens: float = 0.0
    probe_eval_tokens: float = 0.0
    train_flops: float = 0.0
    probe_flops: float = 0.0
    refresh_flops: float = 0.0
    scoring_flops: float = 0.0
    scoring_seconds: float = 0.0
    selection_seconds: float = 0.0
    wait_scoring_seconds: float = 0.0
    wait_refresh_seconds: float = 0.0
    wait_probe_seconds: float = 0.0
    snapshot_seconds: float = 0.0
    probe_slice_seconds: float = 0.0  # on_step running probe slices and refreshes (trainer_thread_rollouts > 0)


@dataclass(frozen=True)
class VersionSwitch(_Record):
    """A model version taking over selection at a window (C++ VersionSwitch)."""
    window: int = 0
    probe_step: int = 0
    version: int = 0


@dataclass(frozen=True)
class SelectionStats(_Record):
    """What selection did so far (C++ SelectionStats). A plain loader (no selection) reports only
    seen = selected = rows streamed."""
    windows: int = 0
    warmup_windows: int = 0
    seen: int = 0
    selected: int = 0
    seen_per_cluster: List[int] = field(default_factory=list)
    selected_per_cluster: List[int] = field(default_factory=list)
    model_version: int = 0
    refreshes: int = 0
    refresh_seconds: float = 0.0
    refresh_wait_seconds: float = 0.0
    heap_releases: int = 0
    heap_release_seconds: float = 0.0
    last_heldout_spearman: float = 0.0
    last_heldout_spearman_scaled: float = 0.0
    last_heldout_spearman_prior: float = 0.0
    last_heldout_spearman_unshrunk: float = 0.0
    head_share: float = 0.0
    head_share_scores: List[float] = field(default_factory=list)
    refreshes_gated: int = 0
    probes: ProbeStats = field(default_factory=ProbeStats)
    cost: SelectionCost = field(default_factory=SelectionCost)
    probes_skipped_budget: int = 0
    probes_skipped_backoff: int = 0
    refreshes_failed: int = 0
    refreshes_rejected_nonfinite: int = 0
    last_refresh_error: str = ""
    consecutive_failures: int = 0
    prior_weight: float = 0.0
    switches: List[VersionSwitch] = field(default_factory=list)
    replayed: int = 0
    replay_relatives: int = 0
    seen_discounted: int = 0
    resume_dropped_rows: int = 0
    resume_dropped_probes: int = 0
    label_buffer_rollouts: int = 0
    versions_held: int = 0
    refreshes_pending: int = 0
    replay_rows: int = 0
    model_hash: int = 0
    centroids_hash: int = 0
    labels_hash: int = 0
    shared_rollouts: int = 0
    shared_bytes: int = 0

    @property
    def selected_share_per_cluster(self) -> List[float]:
        """Per cluster: the share of its candidates that were emitted (0 for an empty cluster)."""
        return [s / n if n else 0.0 for s, n in zip(self.selected_per_cluster, self.seen_per_cluster)]

    def metrics(self, prefix: str = "selection/") -> Dict[str, float]:
        """Scalars for a metrics tool: selected share (overall and per cluster), model version,
        refreshes, the refreshed model's Spearman, probe time share and probe FLOPs share, waits."""
        m = {"selected_share": self.selected / self.seen if self.seen else 0.0,
             "seen": float(self.seen), "selected": float(self.selected), "windows": float(self.windows),
             "model_version": float(self.model_version), "refreshes": float(self.refreshes),
             "refreshes_failed": float(self.refreshes_failed), "spearman": self.last_heldout_spearman,
             "probes_completed": float(self.probes.probes_completed), "probes_failed": float(self.probes.probes_failed),
             "probes_timed_out": float(self.probes.probes_timed_out),
             "consecutive_failures": float(self.consecutive_failures),
             "probes_skipped_budget": float(self.probes_skipped_budget),
             "probes_skipped_backoff": float(self.probes_skipped_backoff),
             "resume_dropped_rows": float(self.resume_dropped_rows),
             "replay_relatives": float(self.replay_relatives),
             "seen_discounted": float(self.seen_discounted),
             "replayed": float(self.replayed),
             "label_buffer_rollouts": float(self.label_buffer_rollouts),
             "versions_held": float(self.versions_held),
             "refreshes_pending": float(self.refreshes_pending),
             "replay_rows": float(self.replay_rows),
             "probe_time_share": self.probes.probe_share,
             "probe_flops_share": self.cost.probe_flops / self.cost.train_flops if self.cost.train_flops else 0.0,
             "trainer_wait_seconds": self.cost.wait_scoring_seconds + self.cost.wait_refresh_seconds
             + self.cost.wait_probe_seconds + self.cost.snapshot_seconds,
             "prior_weight": self.prior_weight}
        for i, share in enumerate(self.selected_share_per_cluster):
            m[f"cluster_{i}/selected_share"] = share
        return {prefix + k: float(v) for k, v in m.items()}


@dataclass(frozen=True)
class LoaderStats(_Record):
    """Counters of the C++ core (LoaderStats) and its skip report; the plain loader also gives
    skipped (by "source/reason") and config_fingerprint (None in selection modes). The cache
    counters are of JSONL sources (zero for other formats): line_index_cache_hits / _misses count
    files at open (index read from its on-disk cache, or built), zstd_frame_cache_hits / _misses
    count document reads of .jsonl.zst files (served by a decompressed frame in the LRU, or
    decompressing one), zstd_frame_cache_bytes is what the LRU holds now. With pin_memory=True and CUDA
    (plain mode): pinned_buffers page-locked pool buffers, pin_failures buffers the CUDA runtime
    refused to page-lock (used unpinned, copied synchronously), pin_last_error its last error code."""
    batches: int = 0
    buffers_allocated: int = 0
    consumer_wait_seconds: float = 0.0
    batches_in_flight: int = 0
    line_index_cache_hits: int = 0
    line_index_cache_misses: int = 0
    zstd_frame_cache_hits: int = 0
    zstd_frame_cache_misses: int = 0
    zstd_frame_cache_bytes: int = 0
    skip_report: str = ""
    skipped: Optional[Dict[str, int]] = None
    config_fingerprint: Optional[int] = None
    pinned_buffers: int = 0
    pin_failures: int = 0
    pin_last_error: int = 0

    def metrics(self, prefix: str = "loader/") -> Dict[str, float]:
        """Scalars for a metrics tool: batches, consumer wait, buffers, skipped records, caches
        (zstd_frame_cache_hit_rate: hits / reads, 0 before any read)."""
        reads = self.zstd_frame_cache_hits + self.zstd_frame_cache_misses
        m = {"batches": self.batches, "consumer_wait_seconds": self.consumer_wait_seconds,
             "buffers_allocated": self.buffers_allocated,
             "skipped": sum((self.skipped or {}).values()),
             "line_index_cache_hits": self.line_index_cache_hits,
             "line_index_cache_misses": self.line_index_cache_misses,
             "zstd_frame_cache_hit_rate": self.zstd_frame_cache_hits / reads if reads else 0.0}
        return {prefix + k: float(v) for k, v in m.items()}


_NESTED = {"probes": ProbeStats, "cost": SelectionCost, "switches": VersionSwitch}
