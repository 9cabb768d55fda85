"""Selection modes and oracle probes of a Python nn.Module through groupmates._engine:
labels through the adapter equal the C++ prober's on a C++ model, the live model is never touched,
selection + probes resume exactly from state_dict, and GC / interrupt with a probe in flight."""
import copy
import gc
import textwrap
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn as nn

import groupmates
from test_training_batches import fresh_seed  # noqa: E402
from conftest import run_python

if not groupmates.engine_available():
    pytest.skip(f"groupmates._engine did not import: {groupmates.engine_error()}", allow_module_level=True)

from groupmates import probe as gprobe  # noqa: E402

V, T, B = 64, 16, 4


class Bigram(nn.Module):
    """Embedding -> Linear: the same architecture as the C++ test hook's module."""

    def __init__(self, vocab=V, dim=32):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, x):
        return self.head(self.emb(x))


@pytest.fixture(scope="module")
def topic_tokens(tmp_path_factory):
    """Token rows with structure (4 topics = token ranges), like the C++ online loader test."""
    path = str(tmp_path_factory.mktemp("topics") / "topics.bin")
    rng = np.random.default_rng(7)
    rows = []
    for _ in range(2000):
        topic = int(rng.integers(0, 4))
        rows.append(topic * 16 + rng.integers(0, 2 if topic == 0 else 16, size=T))
    np.concatenate(rows).astype(np.uint16).tofile(path)
    return path


# The timing-free refresh mode and no probe budget: these tests compare exact streams and probe counts.
# refresh_gate off: these tests check refresh mechanics, every refresh publishes (the gate: tests/online)
SELECTION = dict(mode="group", window_size=32, ratio=0.5, clusters=4, encoder_buckets=512, encoder_dim=16,
                 refresh_train_steps=5, refresh_batch_rollouts=4, refresh_mode="at_step", refresh_gate=False)
PROBES = dict(interval_steps=6, first_step=2, rollout_length=3, random_rollouts=2, neighbour_rollouts=2,
              bootstrap_pairs=1, pool_rows=32, effect_delay_steps=3, budget=0.0)
REFS = torch.arange(4 * T).remainder(2).view(4, T)


def selecting(path, **kw):
    args = dict(sources=[path], sequence_length=T, batch_size=B, epochs=0, vocab_size=V, seed=3,
                selection=dict(SELECTION), probes=dict(PROBES))
    args.update(kw)
    return groupmates.GroupMatesLoader(**args)


def live_model(seed=0):
    torch.manual_seed(seed)
    model = Bigram()
    return model, torch.optim.AdamW(model.parameters(), lr=3e-3)


def train(loader, model, opt, start, stop):
    """Trains on what the loader emits for steps [start, stop); returns the batches."""
    out = []
    for step in range(start, stop):
        b = next(loader)
        out.append(b)
        loss = groupmates.next_token_loss(model, b["input_ids"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        loader.on_step(step, model, opt, reference_batches=REFS)
    return out


# ---- labels: adapter vs C++ prober ----------------------------------------------------------------

def expected_labels(model, opt_cls, lr, pool, plan, L, R, lr_scale, refs):
    """The definition in pure Python: R_0, then per step one clipped optimizer step with lr * lr_scale;
    s_t = R_t - R_0, y_t = s_t - s_{t-1}."""
    m = copy.deepcopy(model)
    opt = opt_cls(m.parameters(), lr=lr * lr_scale)

    def ref():
        with torch.no_grad():
            return sum(float(groupmates.next_token_loss(m, r)) for r in refs) / len(refs)

    r0, prev, labels = ref(), 0.0, []
    for t in range(L):
        opt.zero_grad()
        groupmates.next_token_loss(m, pool[plan[t * R:(t + 1) * R]]).backward()
        torch.nn.utils.clip_grad_norm_(list(m.parameters()), 1.0)
        opt.step()
        s = ref() - r0
        labels.append(s - prev)
        prev = s
    return labels


def bigram_case(seed, opt_name, lr, vocab=16):
    """(model, opt_cls, opt, pool, refs): a small Bigram, its optimizer, 12 candidate rows and two
    reference batches, drawn from torch's generator at `seed`."""
    torch.manual_seed(seed)
    model = Bigram(vocab, 8)
    opt_cls = torch.optim.SGD if opt_name == "sgd" else torch.optim.AdamW
    pool = torch.randint(0, vocab, (12, 8))
    refs = [torch.randint(0, vocab, (3, 8)), torch.randint(0, vocab, (2, 8))]
    return model, opt_cls, opt_cls(model.parameters(), lr=lr), pool, refs


@pytest.mark.parametrize("opt_name,lr", [("sgd", 0.5), ("adamw", 0.01)])
def test_adapter_labels_equal_the_cpp_prober_on_the_same_model(testhooks, opt_name, lr):
    L, R, lr_scale = 3, 2, 0.5
    model, opt_cls, opt, pool, refs = bigram_case(11, opt_name, lr)
    rng = np.random.default_rng(5)
    plans = [[int(i) for i in rng.permutation(12)[:L * R]] for _ in range(4)]
    before = copy.deepcopy(model.state_dict())

    cpp = testhooks.make_bigram_target(model.emb.weight.detach(), model.head.weight.detach(),
                                       model.head.bias.detach(), opt_name, lr, refs)
    py_target, ops = gprobe.make_target(model, opt, groupmates.next_token_loss, refs)
    a = testhooks.probe_labels(cpp, pool, plans, L, R, lr_scale)
    b = testhooks.probe_labels(py_target, pool, plans, L, R, lr_scale)
    assert ops.errors == 0, ops.last_error
    assert len(a) == len(b) == len(plans)
    for ra, rb, plan in zip(a, b, plans):
        assert ra["candidates"] == rb["candidates"] == plan
        np.testing.assert_allclose(rb["reference_before"], ra["reference_before"], rtol=1e-6)
        np.testing.assert_allclose(rb["labels"], ra["labels"], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(rb["cumulative"], ra["cumulative"], rtol=1e-4, atol=1e-6)
        # and both follow the definition
        want = expected_labels(model, opt_cls, lr, pool, plan, L, R, lr_scale, refs)
        np.testing.assert_allclose(rb["labels"], want, rtol=1e-4, atol=1e-6)
        assert any(abs(y) > 1e-4 for y in rb["labels"])
    # the prober worked on copies
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def expected_first_order_labels(model, opt_cls, lr, pool, plan, L, R, lr_scale, refs):
    """First-order labels by their definition: g = d R / d theta at theta_0 (eval mode), the same
    clipped steps; s_t = <g, theta_t - theta_0>, y_t = s_t - s_{t-1}."""
    m = copy.deepcopy(model)
    params = list(m.parameters())
    m.eval()
    loss = sum(groupmates.next_token_loss(m, r) for r in refs) / len(refs)
    g = torch.autograd.grad(loss, params)
    m.train()
    theta0 = [p.detach().clone() for p in params]
    opt = opt_cls(params, lr=lr * lr_scale)
    prev, labels = 0.0, []
    for t in range(L):
        opt.zero_grad()
        groupmates.next_token_loss(m, pool[plan[t * R:(t + 1) * R]]).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        s = sum(float((gi.double() * (p.detach().double() - p0.double())).sum()) for gi, p, p0 in zip(g, params, theta0))
        labels.append(s - prev)
        prev = s
    return labels


@pytest.mark.parametrize("opt_name,lr", [("sgd", 0.5), ("adamw", 0.01)])
def test_first_order_labels_equal_the_definition_through_both_targets(testhooks, opt_name, lr):
    seed = fresh_seed()
    L, R, lr_scale = 2, 1, 0.5
    model, opt_cls, opt, pool, refs = bigram_case(seed, opt_name, lr)
    rng = np.random.default_rng(seed)
    plans = [[int(i) for i in rng.permutation(12)[:L * R]] for _ in range(6)]
    cpp = testhooks.make_bigram_target(model.emb.weight.detach(), model.head.weight.detach(),
                                       model.head.bias.detach(), opt_name, lr, refs)
    py_target, ops = gprobe.make_target(model, opt, groupmates.next_token_loss, refs)
    a = testhooks.probe_labels(cpp, pool, plans, L, R, lr_scale, first_order=True)
    b = testhooks.probe_labels(py_target, pool, plans, L, R, lr_scale, first_order=True)
    assert ops.errors == 0, ops.last_error
    assert len(a) == len(b) == len(plans)
    for ra, rb, plan in zip(a, b, plans):
        want = expected_first_order_labels(model, opt_cls, lr, pool, plan, L, R, lr_scale, refs)
        np.testing.assert_allclose(ra["labels"], want, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(rb["labels"], want, rtol=1e-4, atol=1e-7)
        assert any(abs(y) > 1e-5 for y in rb["labels"])
    assert all(p.grad is None for p in model.parameters())


def test_a_failing_loss_fn_is_a_failed_probe_with_its_message(topic_tokens):
    def bad_loss(model, tokens):
        raise ValueError("my loss is broken")

    loader = selecting(topic_tokens)
    model, opt = live_model()
    for step in range(4):
        next(loader)
        loader.on_step(step, model, opt, loss_fn=bad_loss, reference_batches=REFS)
    loader.state_dict()  # waits for the probe in flight
    s = loader.selection_stats()
    assert s["probes"]["probes_failed"] == 1 and s["probes"]["probes_completed"] == 0
    assert "ValueError: my loss is broken" in s["probes"]["last_error"]
    assert "reference_loss" in s["probes"]["last_error"]
    loader.close()


def test_failing_probes_in_a_row_raise_selection_error_at_next(topic_tokens):
    def bad_loss(model, tokens):
        raise ValueError("my loss is broken")

    loader = selecting(topic_tokens, probes=dict(PROBES, max_consecutive_failures=2))
    model, opt = live_model()
    raised_at = None
    for step in range(30):  # probes at 2, 8, ...: the second failure stops the next batch
        try:
            next(loader)
        except groupmates.SelectionError as e:
            raised_at, message = step, str(e)
            break
        loader.on_step(step, model, opt, loss_fn=bad_loss, reference_batches=REFS)
    assert raised_at is not None and 9 <= raised_at <= 15, raised_at
    assert "[selection_failed] ProbeConfig.max_consecutive_failures: 2 probes or refreshes failed in a row" in message
    assert "ValueError: my loss is broken" in message and "max_consecutive_failures = 0" in message
    assert isinstance(groupmates.SelectionError("x"), RuntimeError)
    s = loader.selection_stats()
    assert s.probes.probes_failed == 2 and s.consecutive_failures == 2
    loader.close()


def test_a_hung_probe_is_abandoned_at_its_timeout(topic_tokens):
    release = threading.Event()

    def hanging_loss(model, tokens):
        release.wait(60)  # the GIL is released while it waits
        return groupmates.next_token_loss(model, tokens)

    # A probe thread: the timeout applies to it (in slices, trainer_thread_rollouts > 0, a hang is the loop's own).
    loader = selecting(topic_tokens, probes=dict(PROBES, timeout_seconds=0.5, trainer_thread_rollouts=0))
    model, opt = live_model()
    t0 = time.monotonic()
    for step in range(4):  # the probe at step 2 hangs
        next(loader)
        loader.on_step(step, model, opt, loss_fn=hanging_loss, reference_batches=REFS)
    loader.state_dict()  # waits for the probe in flight: at most its timeout
    waited = time.monotonic() - t0
    s = loader.selection_stats()
    assert s.probes.probes_timed_out == 1 and s.probes.probes_completed == 0, s.probes
    assert "step 2 was still running after ProbeConfig.timeout_seconds" in s.probes.last_error, s.probes
    assert 0.5 <= waited < 30, waited
    release.set()  # the abandoned thread finishes; its rollouts are dropped
    for step in range(4, 12):  # the loop goes on: the probe at step 8 runs
        next(loader)
        loader.on_step(step, model, opt, loss_fn=groupmates.next_token_loss, reference_batches=REFS)
    loader.state_dict()
    s = loader.selection_stats()
    assert s.probes.probes_completed == 1 and s.probes.probes_timed_out == 1, s.probes
    loader.close()


# ---- the live model ---------------------------------------------------------------------------------

@pytest.mark.parametrize("slice_rollouts", [0, 2])
def test_async_probes_never_change_the_live_model_or_optimizer(topic_tokens, slice_rollouts):
    # slice_rollouts: ProbeConfig.trainer_thread_rollouts (0: a C++ probe thread; 2, the default: slices in on_step)
    threads = set()

    def loss_fn(model, tokens):
        threads.add(threading.get_ident())
        return groupmates.next_token_loss(model, tokens)

    loader = selecting(topic_tokens, probes=dict(PROBES, trainer_thread_rollouts=slice_rollouts))
    model, opt = live_model()
    for step in range(8):  # probe at step 2 (and 8)
        b = next(loader)
        loss = loss_fn(model, b["input_ids"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step < 7:
            loader.on_step(step, model, opt, loss_fn=loss_fn, reference_batches=REFS)
    weights = copy.deepcopy(model.state_dict())
    state = copy.deepcopy(opt.state_dict())
    grads = [p.grad.clone() for p in model.parameters()]
    loader.state_dict()  # the probe of step 2 is done
    done = loader.selection_stats()["probes"]["probes_completed"]
    loader.on_step(8, model, opt)  # due: snapshot here, rollouts on the probe thread (cached adapter)
    loader.state_dict()             # waits for the probe in flight
    s = loader.selection_stats()["probes"]
    assert s["probes_completed"] == done + 1 and s["probes_failed"] == 0, s
    assert s["rollouts_kept"] > 0
    if slice_rollouts:
        assert threads == {threading.get_ident()}, "the rollouts ran on the training thread, inside on_step"
    else:
        assert len(threads) >= 2, "the rollouts ran on the C++ probe thread"
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    after = opt.state_dict()
    assert after["param_groups"] == state["param_groups"]
    for i, st in state["state"].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(after["state"][i][k]), torch.as_tensor(v)), (i, k)
    for p, g in zip(model.parameters(), grads):
        assert torch.equal(p.grad, g)
    loader.close()


# ---- iteration and resume ---------------------------------------------------------------------------

def test_selection_batches_and_stats(topic_tokens):
    loader = selecting(topic_tokens)
    model, opt = live_model()
    batches = train(loader, model, opt, 0, 30)
    for i, b in enumerate(batches):
        assert b["input_ids"].shape == (B, T) and b["input_ids"].dtype == torch.int64
        assert b["ids"].shape == (B,) and b["influence"].shape == (B,) and b["cluster"].shape == (B,)
        assert b["index"] == i
    # warm-up until the first refresh takes effect (probe at step 2, effective at 5), then refreshed
    assert all(b["model_version"] == 1 for b in batches[:5])
    assert batches[-1]["model_version"] > 1
    assert torch.isfinite(batches[-1]["influence"]).all()
    s = loader.selection_stats()
    assert s["refreshes"] >= 3 and s["probes"]["probes_completed"] >= 4
    assert s["probes"]["probes_skipped_busy"] == 0
    assert s["selected"] == 30 * B and s["windows"] * 16 >= s["selected"]
    assert loader.state_dict()["batches"] == 30
    loader.close()


@pytest.mark.parametrize("k", [4, 13])
def test_state_dict_resume_reproduces_the_stream(topic_tokens, k):
    total = 30
    loader = selecting(topic_tokens)
    model, opt = live_model()
    first = train(loader, model, opt, 0, k + 1)
    saved = loader.state_dict()
    model_k, opt_k = copy.deepcopy((model, opt))
    rest = train(loader, model, opt, k + 1, total)
    loader.close()

    resumed = selecting(topic_tokens, state=saved)
    assert resumed.state_dict()["state"] == saved["state"]
    again = train(resumed, model_k, opt_k, k + 1, total)
    resumed.close()
    assert len(again) == len(rest) == total - k - 1
    for a, b in zip(rest, again):
        assert torch.equal(a["input_ids"], b["input_ids"]), a["index"]
        assert torch.equal(a["ids"], b["ids"])
        assert a["model_version"] == b["model_version"] and a["index"] == b["index"]
    assert len(first) == k + 1


def test_break_and_iterate_again_continues_the_stream(topic_tokens):
    a, b = selecting(topic_tokens), selecting(topic_tokens)
    straight = [next(a)["input_ids"] for _ in range(10)]
    got = []
    for i, batch in enumerate(b):
        got.append(batch["input_ids"])
        if i == 3:
            break  # stops the threads (state saved); iterating again restarts exactly there
    for batch in b:
        got.append(batch["input_ids"])
        if len(got) == 10:
            break
    for x, y in zip(straight, got):
        assert torch.equal(x, y)
    a.close()
    b.close()


def test_selection_config_errors(topic_tokens):
    with pytest.raises(groupmates.ConfigError, match="SelectionConfig.mode"):
        selecting(topic_tokens, selection="best")
    with pytest.raises(groupmates.ConfigError, match="SelectionConfig.windows"):
        selecting(topic_tokens, selection={"windows": 3})
    with pytest.raises(groupmates.ConfigError, match="ratio"):
        selecting(topic_tokens, selection=dict(SELECTION, ratio=1.5))
    loader = selecting(topic_tokens)
    model, opt = live_model()
    with pytest.raises(groupmates.ConfigError, match="reference_batches"):
        loader.on_step(0, model, opt)
    with pytest.raises(groupmates.ConfigError, match="optimizer"):
        loader.on_step(0, model)
    loader.close()


def test_without_the_engine_selection_raises_an_import_error_and_streaming_works(topic_tokens, monkeypatch):
    from groupmates import _extensions
    monkeypatch.setattr(_extensions, "engine", None)
    monkeypatch.setattr(_extensions, "ENGINE_ERROR", "ImportError: libtorch_python.so: cannot open shared object file")
    with pytest.raises(ImportError, match="groupmates._engine.*libtorch_python") as e:
        selecting(topic_tokens)
    assert isinstance(e.value, groupmates.EngineUnavailableError)
    assert isinstance(e.value, groupmates.GroupMatesError)
    plain = groupmates.GroupMatesLoader(sources=[topic_tokens], sequence_length=T, batch_size=B)
    assert next(plain)["input_ids"].shape == (B, T)
    plain.on_step(0, nn.Linear(2, 2))  # plain mode: records the step
    plain.close()


# ---- lifetime with a probe in flight ----------------------------------------------------------------

SLOW_PROBE = """
import gc, os, signal, sys, threading, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored (a background job)
import numpy as np, torch, torch.nn as nn
import groupmates
path = sys.argv[1] if len(sys.argv) > 1 else {path!r}
class M(nn.Module):
    def __init__(self):
        super().__init__(); self.emb = nn.Embedding(64, 32); self.head = nn.Linear(32, 64)
    def forward(self, x): return self.head(self.emb(x))
started = threading.Event()
finished = threading.Event()
def slow_loss(model, tokens):
    if threading.current_thread() is not threading.main_thread():
        started.set()
        time.sleep(0.05)
        {extra}
    return groupmates.next_token_loss(model, tokens)
def make():
    return groupmates.GroupMatesLoader(
        sources=[path], sequence_length=16, batch_size=4, epochs=0, vocab_size=64,
        selection=dict(mode="group", window_size=32, clusters=4, encoder_buckets=512, encoder_dim=16,
                       refresh_train_steps=2, refresh_batch_rollouts=2),
        probes=dict(interval_steps=100, first_step=2, rollout_length=4, random_rollouts=8, neighbour_rollouts=0,
                    bootstrap_pairs=0, pool_rows=32, effect_delay_steps=50, budget=0.0,
                    trainer_thread_rollouts=0))  # a probe thread: these tests are about its lifetime
model = M(); opt = torch.optim.SGD(model.parameters(), lr=0.1)
refs = torch.zeros(2, 16, dtype=torch.long)
t0 = time.monotonic()
{body}
print("ok", round(time.monotonic() - t0, 2), flush=True)
"""


def run_slow(topic_tokens, body, extra="pass", timeout=120):
    code = SLOW_PROBE.format(path=topic_tokens, body=textwrap.dedent(body), extra=extra)
    r = run_python(code, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("ok"), (r.stdout, r.stderr[-3000:])
    return r


def test_gc_of_a_loader_with_a_probe_in_flight_does_not_hang(topic_tokens):
    run_slow(topic_tokens, """
    loader = make()
    for step in range(3):
        next(loader)
        loader.on_step(step, model, opt, loss_fn=slow_loss, reference_batches=refs)
    assert started.wait(30)
    del loader
    gc.collect()  # waits for the probe (~2 s of slow losses) with the GIL released, then joins
    """)


def test_keyboard_interrupt_with_a_probe_in_flight_then_exit(topic_tokens):
    run_slow(topic_tokens, """
    loader = make()
    try:
        for step, batch in enumerate(loader):
            loader.on_step(step, model, opt, loss_fn=slow_loss, reference_batches=refs)
            if step == 3:
                assert started.wait(30)
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    else:
        raise SystemExit("no KeyboardInterrupt")
    # the loop's exit stopped the threads (after the probe); the loader goes on from there
    assert next(loader)["index"] == 4
    # and exiting with a probe in flight is clean too
    loader.on_step(102, model, opt)
    """)


def test_gc_on_the_probe_thread_of_the_loader_being_collected(topic_tokens):
    # The probe's loss_fn runs a garbage collection (on the C++ probe thread) that finalizes the very
    # loader whose probe it is: the loader cannot wait for itself, it is destroyed on another thread.
    run_slow(topic_tokens, """
    loader = make()
    loader.self_ref = loader  # a cycle: only the cyclic GC frees it
    for step in range(3):
        next(loader)
        loader.on_step(step, model, opt, loss_fn=slow_loss, reference_batches=refs)
    assert started.wait(30)
    del loader
    assert finished.wait(60)
    # exit now: the probe still runs; atexit waits for the detached destruction
    """, extra="gc.collect(); finished.set()")


def test_importance_mode_and_cost_accounting(topic_tokens):
    # Importance resampling needs reference rows; it then takes the reference-like rows (topic 0,
    # tokens 0 and 1, like REFS) first. Group-MATES with the same rows gets the prior, counts the
    # FLOPs of training and probes, and keeps its probes within the budget.
    imp = selecting(topic_tokens, selection=dict(SELECTION, mode="importance"))
    with pytest.raises(groupmates.GroupMatesError, match="set_reference"):
        next(imp)
    imp.close()
    imp = selecting(topic_tokens, selection=dict(SELECTION, mode="importance"))
    imp.set_reference(REFS)
    rows = torch.cat([next(imp)["input_ids"] for _ in range(20)])
    share = rows.lt(2).all(1).float().mean().item()
    assert share > 0.4, share  # random: about 0.25
    assert imp.selection_stats()["warmup_windows"] == 0
    imp.close()

    budget = 0.5
    loader = selecting(topic_tokens, probes=dict(PROBES, interval_steps=2, effect_delay_steps=1, budget=budget,
                                                  min_rollouts=2))
    loader.set_reference([REFS])
    model, opt = live_model()
    for step in range(40):
        b = next(loader)
        loss = groupmates.next_token_loss(model, b["input_ids"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        loader.on_step(step, model, opt, reference_batches=[REFS])
    loader.state_dict()  # waits for the probe in flight
    s = loader.selection_stats()
    c = s["cost"]
    params = sum(p.numel() for p in model.parameters())
    assert c["flops_per_token"] == 2 * params
    assert c["train_tokens"] == 40 * B * T
    assert c["train_flops"] == pytest.approx(3 * 2 * params * 40 * B * T)
    assert c["probe_flops"] > 0
    assert 3 * c["probe_train_tokens"] + c["probe_eval_tokens"] <= budget * 3 * c["train_tokens"] + 1e-9
    assert s["probes_skipped_budget"] > 0
    assert s["warmup_windows"] == 0 and s["prior_weight"] >= 0
    loader.close()


def test_selection_stats_hold_every_field_of_the_cpp_structs(topic_tokens):
    # selection_stats() is SelectionStats (include/groupmates/selection_stats.h) as nested dicts, all of
    # its fields, through the one generic conversion; probes also carry the Python "last_error".
    from groupmates import _core

    def names(cls):
        return {name for name, _kind in cls._fields}

    loader = selecting(topic_tokens, return_candidates=True)
    model, opt = live_model()
    batches = train(loader, model, opt, 0, 20)
    loader.state_dict()  # waits for the probe in flight
    s = loader.selection_stats()
    assert set(s) == names(_core.SelectionStats)
    assert set(s["probes"]) == names(_core.ProbeStats) | {"last_error"}
    assert set(s["cost"]) == names(_core.SelectionCost)
    assert s["switches"] and all(set(w) == names(_core.VersionSwitch) for w in s["switches"])
    assert set(loader.stats()) == names(_core.LoaderStats) | {"skip_report", "skipped", "config_fingerprint",
                                                              "pinned_buffers", "pin_failures", "pin_last_error"}
    assert loader.stats().config_fingerprint is None and loader.stats().skipped is None
    # the one delivery path: selection batches carry the candidates too when asked
    b = batches[-1]
    assert b["source"].shape == b["document"].shape == b["offset"].shape == (B,)
    assert b["source"].dtype == torch.int64 and b["influence"].dtype == torch.float32
    loader.close()


def test_replay_share_auto_is_the_modes_share_and_part_of_the_state(topic_tokens):
    # "auto" (the default) reaches the engine as the mode's share: half the rows of a selecting mode replayed, none
    # for random; a state resumes only under the share it was saved with, and the refusal names the fix.
    assert groupmates.SelectionConfig().replay_share == "auto"
    probes = dict(PROBES, interval_steps=0)
    sel = dict(SELECTION, replay_rows=8)  # replays start once the buffer holds 2 rows
    assert "replay_share" not in sel
    loader = selecting(topic_tokens, selection=sel, probes=probes)
    loader.set_reference(REFS)
    for _ in range(24):
        next(loader)
    s = loader.selection_stats()
    assert 0.3 * s["selected"] < s["replayed"] <= 0.5 * s["selected"], (s["replayed"], s["selected"])
    saved = loader.state_dict()
    assert "extra gm.replay_share 0.5\n" in saved["state"]
    loader.close()
    with pytest.raises(groupmates.StateError, match=r"gm\.replay_share.*set SelectionConfig\.replay_share = 0\.5"):
        selecting(topic_tokens, selection=dict(sel, replay_share=0.0), probes=probes, state=saved)
    selecting(topic_tokens, selection=dict(sel, replay_share=0.5), probes=probes, state=saved).close()
    selecting(topic_tokens, selection=sel, probes=probes, state=saved).close()  # "auto" takes the saved share
    rnd = selecting(topic_tokens, selection=dict(sel, mode="random"), probes=probes)
    rnd.set_reference(REFS)
    for _ in range(8):
        next(rnd)
    assert rnd.selection_stats()["replayed"] == 0
    assert "extra gm.replay_share 0\n" in rnd.state_dict()["state"]
    rnd.close()
    with pytest.raises(groupmates.ConfigError, match="SelectionConfig.replay_share"):
        selecting(topic_tokens, selection=dict(sel, replay_share="half"), probes=probes)


@pytest.mark.parametrize("k", [3, 10])
def test_replay_and_seen_memory_resume_exactly(topic_tokens, k):
    # replay_share and seen_discount reach the engine from Python, count in the stats, and their state (the
    # replay buffer, the shingle memory, the replay pattern's position) resumes exactly, batch indices too.
    sel = dict(SELECTION, replay_share=0.25, replay_rows=8, seen_discount=1.0, seen_shingle_tokens=4)
    probes = dict(PROBES, interval_steps=0)

    def emit(loader, n):
        return [next(loader) for _ in range(n)]

    loader = selecting(topic_tokens, selection=sel, probes=probes)
    loader.set_reference(REFS)
    emit(loader, k)
    saved = loader.state_dict()
    rest = emit(loader, 12)
    s = loader.selection_stats()
    assert s["replayed"] > 0 and s["seen_discounted"] > 0
    assert s["selected"] == (k + 12) * B
    assert loader.selection_stats().metrics()["selection/replayed"] == s["replayed"]
    loader.close()
    resumed = selecting(topic_tokens, selection=sel, probes=probes, state=saved)
    again = emit(resumed, 12)
    resumed.close()
    for a, b in zip(rest, again):
        assert torch.equal(a["input_ids"], b["input_ids"]), a["index"]
        assert a["index"] == b["index"]
