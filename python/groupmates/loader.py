"""GroupMatesLoader: the C++ streaming loader as a PyTorch IterableDataset."""
import atexit
import dataclasses
import os
import threading
import warnings
import weakref
from typing import Any, Callable, Dict, Iterator, Optional, Union

import numpy as np
import torch

from . import _core, _extensions, _transfer
from .config import LoaderConfig, ProbeConfig, SelectionConfig, as_config
from .errors import GroupMatesError, StateError, config_error
from .probe import make_target
from .ranks import resolve_ranks
from .stats import LoaderStats, SelectionStats

_PINNED_DEVICE_TYPE = "cuda"  # the device type whose batches the plain core's pinned buffers feed
# Batch fields moved to `device` (the per-token ones and the document offsets).
_DEVICE_FIELDS = ("input_ids", "labels", "loss_mask", "position_ids", "document_ids", "cu_seqlens")

_STATE_FORMAT = "groupmates-loader"
_STATE_VERSION = 1
# The batch key under which a DataLoader worker reports its state to groupmates.DataLoader.
WORKER_STATE_KEY = "_groupmates_state"

# Every loader with live C++ workers, to stop them at exit and to snapshot them before fork().
_live = weakref.WeakSet()
_live_lock = threading.Lock()



class GroupMatesLoader(torch.utils.data.IterableDataset):
    """Streams [B, T] int64 batches of token ids from the C++ core, zero-copy.

        loader = groupmates.GroupMatesLoader(sources=["train.bin"], sequence_length=1024, batch_size=16,
                                             seed=0, epochs=0)   # rank, world_size: see below
        for batch in loader:               # {"input_ids": LongTensor[B, T], "ids": LongTensor[B], "index": int}
            loss = model(batch["input_ids"].to(device)) ...
            if step % 1000 == 0:
                torch.save({"model": model.state_dict(), "data": loader.state_dict()}, path)

    Arguments: a LoaderConfig (see its fields) and/or its fields as keyword arguments (keywords
    override the config's fields), plus

        device:            move input_ids there (e.g. "cuda:0"); None keeps them on the CPU
        pin_memory:        with CUDA and a CUDA `device`: batches in pinned memory, sent non_blocking. The
                           plain core page-locks its pooled buffers once (cudaHostRegister, on `device`),
                           so a batch is pinned as it is made, with no copy (stats: pinned_buffers,
                           pin_failures), and its host memory is kept until the copy is done
                           (groupmates/_transfer.py); with labels the whole rows are sent once and the
                           computed targets copied synchronously. In selection modes (a batch is gathered
                           from a window) and in DataLoader workers torch's pin_memory() copies each
                           batch; without a device nothing is pinned. Where CUDA is not available (a
                           CPU-only torch) it is a no-op with a warning, as in torch.utils.data.DataLoader
        return_candidates: also return "source", "document", "offset" (LongTensor[B]) per row
        state:             a state_dict() to resume from (same as load_state_dict() afterwards)
        selection:         a SelectionConfig, a dict of its fields or a mode name ("group",
                           "individual", "random", ...): select `ratio` of every window of candidates
                           (needs groupmates._engine; None or mode "none" = the plain stream)
        probes:            a ProbeConfig or a dict of its fields: when on_step() gets a model, oracle
                           probes of a copy of it train the influence model that scores the windows
        process_group:     on many ranks, with selection: the torch.distributed group the ranks share
                           probes, one influence model and the centroids over (default: the
                           initialised default group when world_size > 1; False: each rank alone).
                           next(), on_step() and state_dict() are then collective: every rank calls
                           them in the same order (README: Running on many ranks)
        collective_timeout: seconds any rank waits in one of those collectives before it raises
                           DistributedError (a rank that died or hangs)

    Selection modes add batch fields "influence" (float [B], the predicted influence; NaN in
    warm-up), "cluster" (int64 [B]) and "model_version" (int). on_step(step, model, optimizer,
    loss_fn=..., reference_batches=...) once per optimizer step is the whole integration.

    Batch fields: "input_ids" (int64 [B, T], on `device`), "ids" (int64 [B] on the CPU: the
    candidates' stable 64-bit hashes, reinterpreted as signed), "index" (the global batch index).
    The CPU input_ids are views of the loader's pooled buffers: a buffer is reused only after every
    tensor over it is gone, so keeping batches is safe (it only costs memory).

    Streaming semantics: no len(); iterating continues from the current position (a second `for`
    loop goes on where the first stopped) until the configured epochs end (epochs=0: endless).
    Leaving a loop (break, an exception, KeyboardInterrupt) stops and joins the C++ worker threads;
    iterating again restarts them exactly where the stream stopped. close() (also `with`, and
    garbage collection) stops them for good.

    Checkpointing: state_dict() / load_state_dict() carry the exact global position (text from
    the C++ LoaderState: the samples consumed, and the data files by content, not path). It restores
    with any world size and any batch size (batch-size ramp-up: the next batch starts at the next
    sample) and on data copied, moved or renamed (README: Exact resumption).

    Ranks: rank and world_size given in the config win; else an initialised torch.distributed
    group; else torchrun's RANK / WORLD_SIZE; else 0 of 1 (groupmates/ranks.py). A given value that
    disagrees with the group or the environment is a ConfigError (check_rank_environment=False
    turns the check off, for a loader every rank reads whole). self.config holds the resolved values.

    DataLoader workers: with num_workers=k each worker process of a rank reads only its share of
    the rank's batches (worker w the batches start+w, start+w+k, ...; LoaderConfig.reader_count),
    so the DataLoader delivers exactly the stream of num_workers=0. Use groupmates.DataLoader
    (a torch DataLoader that takes the workers' positions back): its state_dict() is exact and a
    second iteration resumes. torch.utils.data.DataLoader(loader, batch_size=None) works too, but
    the parent never sees where its workers got to: after a multi-process iteration this loader's
    state_dict(), next() and a second iteration raise StateError instead of replaying.
    num_workers=0 (the core has its own threads) tracks the state in any DataLoader.

    Threads: none start at construction (nor at load_state_dict() or state_dict()): the config,
    the files and a given state are checked then, and the C++ threads start at the first batch
    (__iter__ / next()), as in torch's and LitData's datasets; a DataLoader forking its workers
    before that forks no thread. A selecting loader builds its engine at the first batch (or
    on_step(), selection_stats(), or a state_dict() before any batch). The C++ threads never call
    Python; next() waits for a batch with the GIL released.
    """

    def __init__(self, config: Optional[LoaderConfig] = None, *, device: Union[str, torch.device, None] = None,
                 pin_memory: bool = False, return_candidates: bool = False,
                 state: Optional[Union[Dict[str, Any], str]] = None,
                 selection: Union[SelectionConfig, Dict[str, Any], str, None] = None,
                 probes: Union[ProbeConfig, Dict[str, Any], None] = None, process_group: Any = None,
                 collective_timeout: float = 1800.0, **fields):
        if config is None:
            config = LoaderConfig()
        elif not isinstance(config, LoaderConfig):
            raise config_error("config", f"expected a groupmates.LoaderConfig, got {type(config).__name__}")
        if fields:
            known = {f.name for f in dataclasses.fields(LoaderConfig)}
            unknown = sorted(set(fields) - known)
            if unknown:
                raise config_error(unknown[0], f"unknown LoaderConfig field; the fields are {sorted(known)}")
            config = dataclasses.replace(config, **fields)
        config = resolve_ranks(config)
        self.config = config
        self._core_config = config.to_core()
        self.selection = as_config(SelectionConfig, selection, "selection") if selection is not None else None
        self.probes = as_config(ProbeConfig, probes, "probes")
        if self.selection is not None and self.selection.mode == "none":
            self.selection = None
        self._engine_configs = self._selection_configs()
        self._process_group, self._collective_device = self._shared_group(process_group)
        if not collective_timeout > 0:
            raise config_error("collective_timeout", f"is {collective_timeout}; must be > 0 seconds (a rank that died "
                               "would be waited for forever)")
        self.collective_timeout = float(collective_timeout)
        self._probe_target = None  # the cached PyModuleProbeTarget and what it wraps
        self._probe_key = None
        self._reference = None
        self._probe_ops = None
        self.device = _checked_device(device)
        self.pin_memory = bool(pin_memory)
        self._to_device = None  # the pinned plain core's asynchronous copies (_transfer.PinnedTransfers)
        if self.pin_memory and not _cuda_available():
            warnings.warn("groupmates: pin_memory=True but CUDA is not available here (torch " + torch.__version__ +
                          "): pinned memory is not used (a no-op, as in torch.utils.data.DataLoader)", stacklevel=2)
        self.return_candidates = bool(return_candidates)
        self._core = None
        self._pid = None
        self._saved = None        # (state text, batches) while the workers are stopped
        self._fork_saved = None   # (state text, batches) taken just before a fork()
        self._closed = False
        self._skips = []          # [{"at_batch", "requested", "skipped"}], recorded in state_dict()
        self._step = None
        self._last_stats = None
        self._last_selection_stats = None
        self._metrics_callbacks = []  # [(fn, every)], called by on_step()
        self._lock = threading.RLock()
        # Shared with DataLoader worker processes (fork or spawn): [1, base seed of the DataLoader
        # iteration] once workers read from this position without reporting back (a plain torch
        # DataLoader), so the position the parent holds is no longer where the trainer is.
        self._workers_took = torch.zeros(2, dtype=torch.int64).share_memory_()
        self._report_state = False  # set by groupmates.DataLoader: workers attach their state to batches
        if state is not None:
            self.load_state_dict(state)
        else:
            self._start(None)

    # ---- iteration ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        if info is not None:
            if self.selection is not None and info.num_workers > 1:
                raise config_error("DataLoader.num_workers", "a selecting GroupMatesLoader runs its own threads and "
                                   "probes the trainer's model: use num_workers=0")
            self._become_worker(info)
            return self._generate(report=self._report_state)
        self._check_position()
        return self._generate()

    def __next__(self) -> Dict[str, Any]:
        """The next batch (next(loader) works without an iterator); StopIteration at the end."""
        self._check_position()
        raw = self._next_raw()
        if raw is None:
            raise StopIteration
        return self._to_batch(raw)

    def _generate(self, report=False):
        try:
            while True:
                raw = self._next_raw()
                if raw is None:
                    return
                batch = self._to_batch(raw)
                if report:  # for groupmates.DataLoader in the parent: the state after this batch
                    with self._lock:
                        batch[WORKER_STATE_KEY] = tuple(self._state())
                yield batch
        finally:
            # break, an exception (KeyboardInterrupt) or gc of the iterator: stop the workers now;
            # the next iteration restarts them from the exact position.
            self._suspend()

    def _next_raw(self):
        with self._lock:
            core = self._live_core()
        return core.next(self.return_candidates)  # releases the GIL while it waits

    def _to_batch(self, raw):
        # The one delivery path of both extensions: numpy arrays (input_ids zero-copy over the C++
        # buffer) become tensors with torch.from_numpy; the per-token fields then go to the device.
        # With labels the rows hold T + 1 tokens: the C++ core computes the targets from them and
        # input_ids become a view of the first T (row stride T + 1).
        if self.config.labels:
            rows = raw["input_ids"]
            raw.update(_core._training_targets(rows, self._core_config))
            raw["input_ids"] = rows[:, :-1]
            raw["tokens"] = rows  # the whole rows (CPU): what probes' loss_fn and reference_batches take
        batch = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in raw.items()}
        if self._to_device is not None:
            return self._send_pinned(batch)
        for k in _DEVICE_FIELDS:
            if k in batch:
                batch[k] = self._deliver(batch[k])
        return batch

    def _send_pinned(self, batch):
        # The core's buffer is pinned: one non-blocking copy of it (the whole rows with labels, input_ids
        # then a device view made contiguous there), held until done. The targets computed from it are
        # ordinary memory: copied synchronously (what the driver does with pageable memory anyway).
        if self.config.labels:
            rows = self._to_device.send(batch["tokens"])
            batch["input_ids"] = rows[:, :-1].contiguous()
        else:
            batch["input_ids"] = self._to_device.send(batch["input_ids"])
        self._to_device.sent()
        for k in _DEVICE_FIELDS[1:]:
            if k in batch:
                batch[k] = batch[k].to(self.device)
        return batch

    def _deliver(self, x):
        if self.device is not None and self.device.type != "cpu":
            if self.pin_memory and _cuda_available():
                x = x.pin_memory().to(self.device, non_blocking=True)
            else:
                x = x.to(self.device)
        return x

    # ---- skipping, checkpointing ---------------------------------------------------------------

    def skip(self, n: int) -> int:
        """Jumps past the next n batches (e.g. after a loss spike); returns how many there were
        (fewer at the end of the stream). The skip is part of the position, so state_dict() taken
        afterwards resumes after the skipped batches; it is also listed in state_dict()["skips"]."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise config_error("skip.n", f"expected an integer >= 0, got {n!r}")
        with self._lock:
            core = self._live_core()
            at = core.batches()
            done = core.skip(n)
            self._skips.append({"at_batch": at, "requested": n, "skipped": done})
            return done

    def state_dict(self) -> Dict[str, Any]:
        """The exact position after the last batch returned: {"format", "version", "state" (the
        C++ LoaderState text), "batches" (global batches consumed), "skips"}."""
        with self._lock:
            self._check_position()
            text, batches = self._state()
            return {"format": _STATE_FORMAT, "version": _STATE_VERSION, "state": text,
                    "batches": batches, "skips": [dict(s) for s in self._skips]}

    def load_state_dict(self, state: Union[Dict[str, Any], str]) -> None:
        """Continues exactly from a state_dict() (or its "state" text) of a loader with the same
        config (world size and batch size may differ: it continues at the same sample; the data may
        have moved: files are matched by content); raises StateError."""
        if isinstance(state, str):
            text, skips, batches = state, [], None
        elif isinstance(state, dict) and "state" in state:
            if state.get("format", _STATE_FORMAT) != _STATE_FORMAT or state.get("version", 1) != _STATE_VERSION:
                raise _state_error(f"unsupported state format {state.get('format')!r} version {state.get('version')!r}")
            text, skips, batches = state["state"], list(state.get("skips", [])), state.get("batches")
        else:
            raise _state_error("expected a GroupMatesLoader.state_dict() or its 'state' text")
        if not isinstance(text, str):
            raise _state_error("the 'state' entry must be the text of a saved LoaderState")
        with self._lock:
            if self._closed:
                raise GroupMatesError("groupmates: the loader is closed")
            self._stop_core()
            self._saved = None
            self._start(text)  # parses and restores now: a bad state raises here
            self._workers_took.zero_()
            self._skips = [dict(s) for s in skips]

    def on_step(self, step: int, model: Optional[torch.nn.Module] = None, optimizer=None, loss_fn=None,
                reference_batches=None) -> None:
        """Training-loop hook, called once per optimizer step (after optimizer.step()).

        Selection modes with probes: when a probe is due (ProbeConfig.interval_steps), the live
        model and optimizer are deep-copied HERE, on this thread (so the probe sees the weights of
        this step); rollouts of real optimizer steps then run on the copies, a slice inside each of the
        next on_step calls on this thread (ProbeConfig.trainer_thread_rollouts, the default), or on a C++
        probe thread with the GIL taken only while Python runs (trainer_thread_rollouts=0); the live
        model and optimizer are never written.

            model, optimizer:  the live torch.nn.Module and torch.optim.Optimizer (with DDP pass
                               model.module: the copy is a plain copy.deepcopy)
            loss_fn:           loss_fn(model, tokens [B, T] int64) -> scalar tensor; default
                               groupmates.probe.next_token_loss (model(x[:, :-1]) are the logits)
            reference_batches: held-out token batches (LongTensor [B, T] each, or one tensor);
                               the probe labels are changes of the mean loss on them

        The adapter is cached: later calls may pass only (step, model, optimizer); passing another
        model, optimizer, loss_fn or reference_batches replaces it. Without a model (or in plain
        mode) this only records the step."""
        if isinstance(step, bool) or not isinstance(step, int):
            raise config_error("on_step.step", f"expected an integer, got {step!r}")
        self._step = int(step)
        if self.selection is not None:
            self._probe_step(step, model, optimizer, loss_fn, reference_batches)
        for fn, every in list(self._metrics_callbacks):
            if step % every == 0:
                fn(int(step), self.metrics())

    def _probe_step(self, step, model, optimizer, loss_fn, reference_batches):
        target = None
        if model is not None:
            if optimizer is None:
                raise config_error("on_step.optimizer", "probes step a copy of the model with a copy of its "
                                   "optimizer: pass the optimizer with the model")
            target = self._target_for(model, optimizer, loss_fn, reference_batches)
        with self._lock:
            core = self._live_core()
        core.on_step(int(step), target)  # the snapshot (deep copy) happens in here; waits without the GIL

    def add_metrics_callback(self, fn: Callable[[int, Dict[str, float]], None], every: int = 100) -> None:
        """Calls fn(step, metrics()) from on_step() at every step that is a multiple of `every`, on
        the training loop's thread: e.g. ``lambda step, m: [writer.add_scalar(k, v, step) for k, v in
        m.items()]`` (TensorBoard) or ``lambda step, m: wandb.log(m, step=step)``."""
        if not callable(fn):
            raise config_error("add_metrics_callback.fn", f"expected a callable fn(step, metrics), got {fn!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise config_error("add_metrics_callback.every", f"expected an integer >= 1, got {every!r}")
        self._metrics_callbacks.append((fn, every))

    def metrics(self) -> Dict[str, float]:
        """Scalars for a metrics tool: stats().metrics() ("loader/...": batches, consumer wait,
        skipped) and, when selecting, selection_stats().metrics() ("selection/...": selected share
        overall and per cluster, model version, refreshes, Spearman, probe time and FLOPs shares)."""
        m = self.stats().metrics()
        if self.selection is not None:
            m.update(self.selection_stats().metrics())
        return m

    def set_reference(self, rows) -> None:
        """Reference rows (LongTensor [R, T], or a list of [B, T] batches): the text selection should
        help, e.g. the probes' reference_batches. Needed by mode "importance"; with
        SelectionConfig.importance_prior it is also the prior of the influence model in the other
        modes. Call before iterating; kept across restarts of the workers (fork, load_state_dict)."""
        if self.selection is None:
            raise config_error("set_reference", "a plain loader (mode 'none') has no use for reference rows")
        if isinstance(rows, (list, tuple)):
            rows = torch.cat([torch.as_tensor(b).reshape(-1, torch.as_tensor(b).shape[-1]) for b in rows])
        rows = torch.as_tensor(rows, dtype=torch.int64).cpu().contiguous()
        if rows.dim() != 2:
            raise config_error("set_reference.rows", f"expected token ids [R, T], got shape {tuple(rows.shape)}")
        with self._lock:
            if self._closed:
                raise GroupMatesError("groupmates: the loader is closed")
            self._reference = rows
            self._adopt_after_fork()
            core = self._core  # None before the first use: _start() passes the rows on then
        if core is not None:
            core.set_reference(rows)

    def _target_for(self, model, optimizer, loss_fn, reference_batches):
        key = self._probe_key
        if key is not None and key[0] is model and key[1] is optimizer and \
                (loss_fn is None or loss_fn is key[2]) and (reference_batches is None or reference_batches is key[3]):
            return self._probe_target
        if key is not None and key[0] is model:  # keep what the earlier call gave unless replaced
            loss_fn = key[2] if loss_fn is None else loss_fn
            reference_batches = key[3] if reference_batches is None else reference_batches
        self._probe_target, self._probe_ops = make_target(model, optimizer, loss_fn, reference_batches)
        self._probe_key = (model, optimizer, loss_fn, reference_batches)
        return self._probe_target

    def selection_stats(self) -> SelectionStats:
        """What selection did so far (groupmates.stats.SelectionStats, the C++ SelectionStats field
        for field; reads like a dict too): windows, warmup_windows, seen, selected, seen_per_cluster,
        selected_per_cluster, model_version, refreshes, refresh_seconds, refresh_wait_seconds,
        last_heldout_spearman (against the measured labels), last_heldout_spearman_scaled (against the
        labels as standardised for training; both of the model with the share of its learned head in force),
        last_heldout_spearman_unshrunk (the whole head's), head_share and head_share_scores (head shrinkage),
        probes (ProbeStats: probes_started/completed/skipped_busy/
        failed/timed_out, rollouts_kept/discarded/skipped, snapshot_seconds, probe_seconds, probe_share, ...,
        last_error: why the last probe failed or timed out, else the last Python exception of a probe
        callback, e.g. loss_fn, or ""), refreshes_failed (of which refreshes_rejected_nonfinite),
        last_refresh_error, consecutive_failures, cost, switches.
        Plain mode: seen = selected = rows streamed, the rest zero."""
        with self._lock:
            if self.selection is None:
                n = self._state()[1] * self.config.batch_size
                return SelectionStats(seen=n, selected=n)
            self._adopt_after_fork()
            if self._core is None and self._last_selection_stats is not None:
                s = dict(self._last_selection_stats)
            else:
                s = self._live_core().selection_stats()
            python_error = self._probe_ops.last_error if self._probe_ops is not None else ""
            s["probes"] = dict(s["probes"], last_error=s["probes"].get("last_error") or python_error)
            return SelectionStats.from_dict(s)

    @property
    def step(self) -> Optional[int]:
        """The last step given to on_step()."""
        return self._step

    def stats(self) -> LoaderStats:
        """Counters of the C++ core (groupmates.stats.LoaderStats; reads like a dict too): batches
        (returned by the core: in selection modes the windows read), buffers_allocated,
        consumer_wait_seconds, skip_report and, in plain mode, skipped and config_fingerprint (None
        when selecting) (of the current or, while stopped, the last run of the workers; a restart
        begins new counters)."""
        with self._lock:
            self._adopt_after_fork()
            if self._core is None and self._last_stats is not None:
                return LoaderStats.from_dict(self._last_stats)
            return LoaderStats.from_dict(self._core_stats(self._live_core()))

    def _core_stats(self, core):
        s = core.stats()
        if self.selection is None:
            s.update(core.pinning())
        return s

    # ---- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stops and joins the worker threads for good (idempotent). state_dict() still works."""
        with self._lock:
            self._suspend()
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self._stop_core()
        except Exception:
            pass

    def __getstate__(self):
        # Pickling (spawn-started DataLoader workers, copy.deepcopy): config and position only.
        with self._lock:
            self._adopt_after_fork()
            saved = self._state() if self._core is not None or self._saved is not None else None  # None: never used
        d = {k: v for k, v in self.__dict__.items() if k not in ("_core", "_pid", "_lock", "_core_config",
                                                               "_engine_configs", "_probe_target", "_probe_key",
                                                               "_probe_ops", "_metrics_callbacks",
                                                               "_process_group", "_to_device")}
        d["_saved"] = saved
        d["_fork_saved"] = None
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)
        self._core, self._pid, self._lock = None, None, threading.RLock()
        self._to_device = None  # made again with the core (_start)
        self._core_config = self.config.to_core()
        self._probe_target = self._probe_key = self._probe_ops = None
        self._metrics_callbacks = []  # callbacks stay with the training loop's process
        self._engine_configs = self._selection_configs()
        self._process_group = None  # a group is not picklable: a copy selects alone

    def __repr__(self):
        c = self.config
        return (f"GroupMatesLoader(sources={len(c.normalized_sources())}, batch_size={c.batch_size}, "
                f"sequence_length={c.sequence_length}, rank={c.rank}/{c.world_size}, "
                f"{'closed' if self._closed else 'running' if self._core is not None else 'stopped'})")

    # ---- DataLoader workers ----------------------------------------------------------------------

    def _become_worker(self, info):
        # In a DataLoader worker process (this object is the worker's copy): from here on read only
        # this worker's share of the rank's batches. The DataLoader takes one batch from each worker
        # in turn, so worker w takes the batches start+w, start+w+k, ...
        if self.config.reader_count != 1:
            raise config_error("LoaderConfig.reader_count", f"is {self.config.reader_count}; DataLoader workers split "
                               "the stream themselves: leave reader_count=1, reader_index=0")
        with self._lock:
            base_seed = info.seed - info.id  # the same in every worker of one DataLoader iteration
            if not self._report_state:
                took = self._workers_took
                if took[0] and int(took[1]) != base_seed:
                    raise self._position_lost()
                took[1], took[0] = base_seed, 1
            text, start = self._state()
            self._stop_core()
            self._saved = (text, start)
            k = info.num_workers
            self._core_config = dataclasses.replace(self.config, reader_count=k,
                                                    reader_index=(start + info.id) % k).to_core()

    def _delivered(self, state):
        # groupmates.DataLoader, in the parent: the workers' state after the batch it just delivered.
        with self._lock:
            if self._core is not None and self._pid == os.getpid():
                self._stop_core()  # the workers read on; this process's own threads are not needed
            self._saved = (state[0], int(state[1]))

    def _check_position(self):
        if torch.utils.data.get_worker_info() is None and int(self._workers_took[0]):
            raise self._position_lost()

    def _position_lost(self):
        try:
            with self._lock:
                batches = self._state()[1]
        except GroupMatesError:
            batches = "?"
        return _state_error(
            "DataLoader worker processes read this loader from batch " + str(batches) + " on, and a plain "
            "torch.utils.data.DataLoader does not tell it which batches it delivered: its state_dict(), next() "
            "and a second iteration would replay from there. Use groupmates.DataLoader(loader, num_workers=k) "
            "(exact state, resumes), or num_workers=0; load_state_dict() sets a known position again")

    # ---- internals -----------------------------------------------------------------------------

    def _selection_configs(self):
        # The C++ SelectionConfig and ProbeConfig of a selecting loader (None in plain mode).
        if self.selection is None:
            return None
        _extensions.require_engine(f"selection mode {self.selection.mode!r}")
        return self.selection.to_core(), self.probes.to_core()

    def _shared_group(self, process_group):
        # (the torch.distributed group the ranks share probes, model and centroids over, its device), or
        # (None, "cpu") when this loader selects alone.
        if self.selection is None or process_group is False:
            return None, "cpu"
        dist = torch.distributed
        if process_group is None:
            if self.config.world_size <= 1:
                return None, "cpu"
            if not dist.is_available() or not dist.is_initialized():
                raise config_error("process_group", f"this is rank {self.config.rank} of {self.config.world_size} and "
                                   f"selection mode {self.selection.mode!r} shares one influence model across the "
                                   "ranks, but torch.distributed is not initialised: call "
                                   "torch.distributed.init_process_group() first (\"gloo\" on CPU, \"nccl\" on GPU), "
                                   "pass process_group=<group>, or process_group=False to select on each rank alone")
            process_group = dist.group.WORLD
        size = dist.get_world_size(process_group)
        if size != self.config.world_size:
            raise config_error("process_group", f"has {size} ranks but the loader is split over "
                               f"world_size={self.config.world_size}: pass the data-parallel group")
        device = "cpu"
        if dist.get_backend(process_group) == "nccl":  # NCCL moves CUDA tensors only
            device = f"cuda:{torch.cuda.current_device()}"
        return process_group, device

    def _start(self, state_text):
        # At construction and load_state_dict: the plain core starts its threads at its first next(); the
        # config, the files and the state are checked now. A selecting core is built here (its
        # SelectionConfig/ProbeConfig checks and the many-rank rules live in the engine's constructor;
        # deferring them to first use let bad configs through construction).
        if self.selection is not None:
            engine = _extensions.require_engine(f"selection mode {self.selection.mode!r}")
            self._core = engine.Loader(self._core_config, *self._engine_configs, state_text, self._process_group,
                                       self.collective_timeout, self._collective_device)
            if getattr(self, "_reference", None) is not None:
                self._core.set_reference(self._reference)
            if state_text is not None:
                _warn_resume_drops(state_text, self._core.selection_stats())
        else:
            register, unregister, set_device, get_device, index = self._host_pinning()
            self._core = _core.Loader(self._core_config, state_text, register, unregister, set_device, get_device, index)
        self._pid = os.getpid()
        with _live_lock:
            _live.add(self)

    def _adopt_after_fork(self):
        # In a fork()ed child (e.g. a DataLoader worker) the parent's threads do not exist: leak the
        # inherited core (destroying it would join threads that are not there) and continue from
        # the position snapshotted just before the fork.
        if self._core is not None and self._pid != os.getpid():
            self._core.abandon()
            self._core = None
            self._to_device = None  # the parent's CUDA events and copies: nothing to wait for here
            self._saved = self._fork_saved if self._fork_saved is not None else self._saved
            self._pid = None

    def _live_core(self):
        self._adopt_after_fork()
        if self._closed:
            raise GroupMatesError("groupmates: the loader is closed")
        if self._core is None:
            self._start(self._saved[0] if self._saved is not None else None)
            self._saved = None
        return self._core

    def _state(self):
        # (state text, batches the trainer consumed), from the workers or as saved when they stopped.
        self._adopt_after_fork()
        if self._core is not None:
            return self._core.state()
        if self._saved is None:
            if self._closed:
                raise GroupMatesError("groupmates: no state (the loader never started)")
            # A selecting loader never used: its first state is its core's (the threads start now).
            return self._live_core().state()
        return self._saved

    def _suspend(self):
        with self._lock:
            self._adopt_after_fork()
            if self._core is not None:
                core = self._core
                self._saved = core.state()
                self._last_stats = self._core_stats(core)
                if self.selection is not None:
                    self._last_selection_stats = core.selection_stats()
                self._stop_core()
                if self.selection is None:
                    self._last_stats.update(core.pinning())  # final: the threads are joined

    def _host_pinning(self):
        # (cudaHostRegister, cudaHostUnregister) for a plain core whose buffers are to be pinned
        # (pin_memory=True, CUDA, not in a DataLoader worker: batches cross to the main process by
        # copy there), else (0, 0). Without the runtime's functions, pin_memory() copies each batch.
        # Only with a device: PinnedTransfers then holds each batch until its copy is done (a pinned
        # batch the caller copied non_blocking itself could be refilled under the copy).
        self._to_device = None
        if (not self.pin_memory or self.device is None or self.device.type != _PINNED_DEVICE_TYPE
                or not _cuda_available() or _in_dataloader_worker()):
            return 0, 0, 0, 0, -1
        functions = _transfer.cuda_host_register_functions()
        if functions is None:
            warnings.warn("groupmates: pin_memory=True: cudaHostRegister was not found in the CUDA runtime torch "
                          "loaded; each batch is copied to pinned memory by torch's pin_memory()", stacklevel=4)
            return 0, 0, 0, 0, -1
        self._to_device = _transfer.PinnedTransfers(self.device, limit=self.config.prefetch_batches)
        index = self.device.index if self.device.index is not None else _current_cuda_device()
        return functions + (index,)

    def _stop_core(self):
        core, self._core = self._core, None
        if self._to_device is not None:
            self._to_device.wait_all()  # the copies read the core's buffers: done before they go back
        if core is None:
            return
        if self._pid != os.getpid():
            core.abandon()
        else:
            core.close()


def _cuda_available() -> bool:
    return torch.cuda.is_available()


def _current_cuda_device() -> int:
    return torch.cuda.current_device()


def _in_dataloader_worker() -> bool:
    return torch.utils.data.get_worker_info() is not None


def _checked_device(device):
    # A device the batches can reach, or a ConfigError now (not at the first batch).
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise config_error("device", f"{device!r} is not a torch device ({e}); use e.g. 'cpu' or 'cuda:0'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise config_error("device", f"'{dev}' but CUDA is not available here (torch {torch.__version__}, "
                               f"built with CUDA: {torch.version.cuda or 'no'}); use device=None or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise config_error("device", f"'{dev}' but only {torch.cuda.device_count()} CUDA device(s) are visible")
    return dev


def _batches_of(text):
    # The global batches of a LoaderState text (its "batches" line), 0 if it has none.
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "batches" and parts[1].isdigit():
            return int(parts[1])
    return 0


def _warn_resume_drops(text, stats):
    # A selecting state restored on another number of ranks drops what it cannot re-cut: say so once.
    saved = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "extra" and parts[1].startswith("gm.stats.resume_dropped_") and parts[2].isdigit():
            saved[parts[1][len("gm.stats."):]] = int(parts[2])
    rows = stats["resume_dropped_rows"] - saved.get("resume_dropped_rows", 0)
    probes = stats["resume_dropped_probes"] - saved.get("resume_dropped_probes", 0)
    if rows > 0 or probes > 0:
        warnings.warn(f"groupmates: resumed on another number of ranks at the next window: {rows} selected rows of "
                      f"the window being emitted at the save and {probes} probe(s) not exchanged yet were dropped "
                      f"(selection_stats().resume_dropped_rows / resume_dropped_probes; save at a window boundary "
                      f"after a refresh to drop nothing)")


def _state_error(message):
    e = StateError(f"groupmates [invalid_state] {message}")
    e.code = "invalid_state"
    return e


def _before_fork():
    # Runs in the parent just before fork(): remember each live loader's position for the child.
    with _live_lock:
        loaders = list(_live)
    for loader in loaders:
        try:
            if loader._core is not None and loader._pid == os.getpid():
                loader._fork_saved = loader._core.state()
        except Exception:
            pass


def _close_all():
    with _live_lock:
        loaders = list(_live)
    for loader in loaders:
        try:
            loader._stop_core()
        except Exception:
            pass
    if _extensions.engine is not None:
        # Loaders finalized by a garbage collection on a probe thread are destroyed on detached C++
        # threads once their probe returns: let them finish while Python can still run.
        _extensions.engine._wait_detached(120.0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork)
atexit.register(_close_all)
