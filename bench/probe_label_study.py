#!/usr/bin/env python3
"""Probe-label study (issue 13): how reproducible is a probe label, and what would make it so?

    bench/probe_label_study.py --build build --pool data/pool-dev/pool.jsonl \
        --reference data/pool-dev/reference.jsonl --seeds 100,101 [--out-dir DIR] [--reuse]

Runs build/bench/probe_label_study once per seed (tuning pool only: never run it on the benchmark's
pools to choose a default) and analyses its JSON: reproducibility (Spearman between repeats) of a
label per design and number of reference rows, what the importance prior and a first-order
gradient label predict, and a cross-validated model-side study on the dumped labels. Design and
figures: docs/PROBE_LABELS.md. Needs numpy only.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def ranks(x):
    x = np.asarray(x, float)
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    r[order] = np.arange(len(x))
    # average ties
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.zeros(len(counts))
    np.add.at(sums, inv, r)
    return (sums / counts)[inv]


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def split_half(delta, cols, n, draws, rng):
    """Mean Spearman between labels from two disjoint random subsets of n of `cols`."""
    out = []
    for _ in range(draws):
        pick = rng.permutation(cols)
        a, b = pick[:n], pick[n:2 * n]
        out.append(spearman(delta[:, a].mean(1), delta[:, b].mean(1)))
    return float(np.mean(out))


def run_study(a, seed, path):
    binary = os.path.join(a.build, "bench", "probe_label_study")
    import bench_efficiency as be
    data_dir = os.path.join(a.out_dir, "data")
    os.makedirs(data_dir, exist_ok=True)
    tok = be.train_tokenizer(a.pool, data_dir, a.vocab, 4_000_000)
    cmd = [binary, "--pool", a.pool, "--reference", a.reference, "--tokenizer", tok, "--seed", str(seed),
           "--out", path] + a.extra.split()
    print(" ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)


def fit_ridge(x, y, lam):
    xm, ym = x.mean(0), y.mean()
    xc = x - xm
    w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ (y - ym))
    return lambda z: (z - xm) @ w + ym


def model_cv(snaps, label_of, folds=8, seed=0):
    """Held-out Spearman (pooled over folds, per snapshot, then averaged) of model variants."""
    rng = np.random.default_rng(seed)
    variants = {}
    for s in snaps:
        bags = np.asarray(s["bags"])
        prior = np.asarray(s["prior"])
        y = label_of(s)
        k = len(y)
        ys = (y - y.mean()) / (y.std() + 1e-12)
        mu, sd = bags.mean(0), bags.std(0) + 1e-9
        zb = (bags - mu) / sd
        # principal components of the standardised bags (fewer parameters)
        u, sv, vt = np.linalg.svd(zb - zb.mean(0), full_matrices=False)
        pcs = zb @ vt[:8].T
        fold = rng.permutation(np.arange(k) % folds)
        preds = {}
        for f in range(folds):
            tr, te = fold != f, fold == f
            cand = {}
            cand["prior only"] = prior[te]
            for lam in (1.0, 30.0, 1000.0):
                cand["ridge bags raw lam=%g" % lam] = fit_ridge(bags[tr], ys[tr], lam)(bags[te])
                cand["ridge bags std lam=%g" % lam] = fit_ridge(zb[tr], ys[tr], lam)(zb[te])
                # residual on the prior: y ~ g * prior + w.z (prior coefficient fitted alongside, unpenalised-ish)
                xz = np.column_stack([prior * 30.0, zb])
                cand["ridge std + prior lam=%g" % lam] = fit_ridge(xz[tr], ys[tr], lam)(xz[te])
            for lam in (1.0, 10.0):
                cand["ridge 8 PCs lam=%g" % lam] = fit_ridge(pcs[tr], ys[tr], lam)(pcs[te])
                xp = np.column_stack([prior, pcs])
                cand["ridge 8 PCs + prior lam=%g" % lam] = fit_ridge(xp[tr], ys[tr], lam)(xp[te])
            g = fit_ridge(prior[tr, None], ys[tr], 1e-6)
            cand["prior, fitted scale"] = g(prior[te, None])
            for name, p in cand.items():
                preds.setdefault(name, np.zeros(k))[te] = p
        for name, p in preds.items():
            variants.setdefault(name, []).append(spearman(p, y))
    return {n: (float(np.mean(v)), float(np.min(v)), float(np.max(v))) for n, v in variants.items()}


def zscore(x):
    x = np.asarray(x, float)
    sd = x.std()
    return (x - x.mean()) / (sd if sd > 0 else 1.0)


def gain(s, cols):
    """A snapshot's single-step labels as loss decreases (higher = better, like the importance score), averaged over
    the reference rows `cols`."""
    return -np.asarray(s["single"])[:, cols].mean(1)


def standardised_bags(bags):
    """Per-column mean and scale of the bags (the scale never 0), as model_cv standardises them."""
    bags = np.asarray(bags)
    return bags.mean(0), bags.std(0) + 1e-9


def live_model_side(snaps, n_probe):
    """E. What the n-gram prior cannot see: how the live model stands to each row (its loss at the snapshot) and
    free proxies of it (token surprisal under the stream's counts), against the single-step labels; and whether a
    coefficient for one of them, fitted on one probe's worth of candidates (24) at one snapshot, still helps the
    prior 100-odd steps later (the next snapshot of the same run), which is what a refresh would need."""
    print("\nE. per snapshot: Spearman of a row feature with the single-step gain (16 probe rows / other rows)")
    feats = ["importance"] + sorted(snaps[0][1]["variants"]) + ["cand_loss", "surprisal_uni", "surprisal_bi",
                                                                   "cand_grad_norm"]
    print("  %-8s %-5s " % ("seed", "step") + " ".join("%17s" % f[:17] for f in feats))
    for seed, s in snaps:
        cols_p, cols_o = np.arange(n_probe), np.arange(n_probe, len(s["base"]))
        vals = []
        for f in feats:
            x = s[f] if f in s else s["variants"][f]
            vals.append("%8.3f /%7.3f" % (spearman(x, gain(s, cols_p)), spearman(x, gain(s, cols_o))))
        print("  %-8s %-5s " % (seed, s["step"]) + " ".join("%17s" % v for v in vals))
    grid = np.linspace(-1.5, 1.5, 31)
    print("\n  importance + beta * feature: beta fitted on the first 24 candidates of a snapshot (16 probe rows), "
          "judged at the next snapshot (other rows): prior alone -> with beta")
    for f in ("cand_loss", "surprisal_uni", "surprisal_bi"):
        out = []
        for (sa, a), (sb, b) in zip(snaps, snaps[1:]):
            if sa != sb:
                continue
            fit = [spearman(zscore(a["importance"][:24]) + t * zscore(a[f][:24]), gain(a, np.arange(n_probe))[:24])
                   for t in grid]
            beta = grid[int(np.nanargmax(fit))]
            g = gain(b, np.arange(n_probe, len(b["base"])))
            out.append((sa, a["step"], beta, spearman(b["importance"], g), spearman(zscore(b["importance"]) + beta * zscore(b[f]), g)))
        print("  %-14s " % f + "; ".join("s%d@%d beta %+.1f: %.3f -> %.3f" % o for o in out))
        print("  %-14s mean change %+.3f, better in %d of %d" % ("", np.mean([o[4] - o[3] for o in out]),
                                                              sum(o[4] > o[3] for o in out), len(out)))


def model_transfer(snaps, n_probe, lam=1000.0, folds=8):
    """F. Do labels stay true long enough to select by? The model of section D ("ridge std + prior", lambda
    1000: the standardised bags beside 30 x the standardised importance, so the prior is hardly penalised),
    fitted on the labels of the 16 probe rows (what a probe measures) and judged against the other reference
    rows: within a snapshot (8-fold CV, like for like), at every later snapshot of the same run, at the next
    one only, and fitted on every earlier snapshot (labels standardised per snapshot), as a refresh trains."""
    gain_p = lambda s: gain(s, np.arange(n_probe))
    gain_o = lambda s: gain(s, np.arange(n_probe, len(s["base"])))

    def x_of(s, mu, sd):
        return np.column_stack([30.0 * zscore(s["importance"]), (np.asarray(s["bags"]) - mu) / sd])

    def summary(name, pairs):
        if not pairs:
            return
        print("  %-62s prior %.3f -> model %.3f; the model better in %d of %d" % (
            name, np.mean([p for p, _ in pairs]), np.mean([m for _, m in pairs]), sum(m > p for p, m in pairs),
            len(pairs)))

    print("\nF. fitted on the probe rows' labels, judged on the other rows' (Spearman, the prior there -> the model)")
    within = []
    for _, s in snaps:
        x, yp = x_of(s, *standardised_bags(s["bags"])), zscore(gain_p(s))
        fold = np.random.default_rng(0).permutation(np.arange(len(yp)) % folds)
        pred = np.zeros(len(yp))
        for f in range(folds):
            tr, te = fold != f, fold == f
            pred[te] = fit_ridge(x[tr], yp[tr], lam)(x[te])
        within.append((spearman(s["importance"], gain_o(s)), spearman(pred, gain_o(s))))
    summary("within a snapshot (8-fold CV)", within)
    later, later24, nxt, close = [], [], [], []
    for i, (sa, a) in enumerate(snaps):
        for j, (sb, b) in enumerate(snaps[i + 1:]):
            if sb != sa:
                continue
            mu, sd = standardised_bags(a["bags"])
            xa, xb, ya = x_of(a, mu, sd), x_of(b, mu, sd), zscore(gain_p(a))
            pair = (spearman(b["importance"], gain_o(b)), spearman(fit_ridge(xa, ya, lam)(xb), gain_o(b)))
            later.append(pair)
            later24.append((pair[0], spearman(fit_ridge(xa[:24], ya[:24], lam)(xb), gain_o(b))))
            if j == 0:
                nxt.append(pair)
            if b["step"] - a["step"] <= 10:
                close.append(pair)
                print("    seed %s, fitted at step %d, judged at %d: %.3f -> %.3f" % (sa, a["step"], b["step"], *pair))
    summary("fitted at one snapshot, judged at every later one", later)
    summary("the same, fitted on the first 24 candidates (one probe)", later24)
    summary("fitted at one snapshot, judged at the next one", nxt)
    summary("judged at most 10 steps later", close)
    pooled = []
    for seed in sorted({sd for sd, _ in snaps}):
        run = [s for sd, s in snaps if sd == seed]
        mu, sd = standardised_bags(np.concatenate([np.asarray(s["bags"]) for s in run]))
        for k in range(2, len(run)):
            fit = fit_ridge(np.concatenate([x_of(s, mu, sd) for s in run[:k]]),
                            np.concatenate([zscore(gain_p(s)) for s in run[:k]]), lam)
            res = [(spearman(s["importance"], gain_o(s)), spearman(fit(x_of(s, mu, sd)), gain_o(s))) for s in run[k:]]
            pooled += res
            print("    seed %s, fitted on steps %s (%d labels): %s" % (
                seed, [s["step"] for s in run[:k]], sum(len(s["importance"]) for s in run[:k]),
                "; ".join("@%d %.3f -> %.3f" % (s["step"], p, m) for s, (p, m) in zip(run[k:], res))))
    summary("fitted on every earlier snapshot, judged at each later one", pooled)


def same_rows(snaps, n_probe):
    """G. (--fixed-candidates) The same rows labelled at every snapshot: does a row's label measured at one snapshot
    (16 probe rows) still rank the rows at a later one (the other rows' labels), against the importance score at the
    later snapshot and the mean of the two ranks? What a selection that replays probe-measured rows would rely on."""
    print("\nG. the same candidates at every snapshot (Spearman against the later snapshot's other-row labels)")
    by_lag = {}
    for seed in sorted({sd for sd, _ in snaps}):
        run = [s for sd, s in snaps if sd == seed]
        for i, a in enumerate(run):
            for b in run[i + 1:]:
                later = gain(b, np.arange(n_probe, len(b["base"])))
                earlier = gain(a, np.arange(n_probe))
                mix = ranks(earlier) + ranks(b["importance"])
                by_lag.setdefault(b["step"] - a["step"], []).append(
                    (spearman(earlier, later), spearman(b["importance"], later), spearman(mix, later)))
    print("  %-5s %6s %22s %22s %22s" % ("lag", "pairs", "measured earlier", "importance then", "mean of both ranks"))
    for lag in sorted(by_lag):
        v = np.asarray(by_lag[lag])
        print("  %-5d %6d %22.3f %22.3f %22.3f" % (lag, len(v), *v.mean(0)))


def analyse(studies):
    rng = np.random.default_rng(0)
    rows = []
    snaps = [(seed, s) for seed, st in studies for s in st["snapshots"]]
    settings = studies[0][1]["settings"]
    n_probe = settings["probe_ref_rows"]

    def mean_over(fn):
        v = [fn(seed, s) for seed, s in snaps]
        return float(np.mean(v)), float(np.min(v)), float(np.max(v))

    def add(name, fn):
        m, lo, hi = mean_over(fn)
        rows.append((name, m, lo, hi))

    def probe_label(delta):
        return np.asarray(delta)[:, :n_probe].mean(1)

    def other_cols(s):
        return np.arange(n_probe, len(s["base"]))

    # A. reference rows: position 0 (one step from the snapshot)
    n_other = min(len(s["base"]) for _, s in snaps) - n_probe
    for n in [n for n in (8, 16, 32, 64) if 2 * n <= n_other]:
        add("single step, split-half over other ref rows, n=%d each" % n,
            lambda seed, s, n=n: split_half(np.asarray(s["single"]), other_cols(s), n, 40, rng))
    add("single step: 16 probe rows vs the other rows",
        lambda seed, s: spearman(probe_label(s["single"]), np.asarray(s["single"])[:, n_probe:].mean(1)))

    # B. context (absent with --contexts 0 / --repeats 0)
    has_shared = all(s["shared"] for _, s in snaps)
    has_rollouts = all(len(s["rollout"]) >= 2 for _, s in snaps)
    if has_shared:
      add("shared prefix (16 probe rows) vs no prefix (16 probe rows)",
        lambda seed, s: np.mean([spearman(probe_label(c["delta"]), probe_label(s["single"])) for c in s["shared"]]))
      add("shared prefix (other rows) vs no prefix (other rows)",
        lambda seed, s: np.mean([spearman(np.asarray(c["delta"])[:, n_probe:].mean(1),
                                          np.asarray(s["single"])[:, n_probe:].mean(1)) for c in s["shared"]]))
    if has_shared and all(len(s["shared"]) > 1 for _, s in snaps):
        add("shared prefix j=0 vs j=1 (16 probe rows)",
            lambda seed, s: spearman(probe_label(s["shared"][0]["delta"]), probe_label(s["shared"][1]["delta"])))

    def rollout_labels(s, j, cols, paired):
        out = []
        for r in s["rollout"][j]:
            d = np.asarray(r["delta"])[cols]
            if paired:
                d = d - np.asarray(r["control"])[cols]
            out.append(d.mean())
        return np.array(out)

    pc = lambda s: np.arange(n_probe)
    oc = other_cols
    for paired in ((False, True) if has_rollouts else ()):
        tag = "paired with a control step" if paired else "as the library labels it"
        add("random prefix (library rollout, position %d), repeat 0 vs 1, 16 probe rows, %s"
            % (settings["prefix"] + 1, tag),
            lambda seed, s, p=paired: spearman(rollout_labels(s, 0, pc(s), p), rollout_labels(s, 1, pc(s), p)))
        add("random prefix, repeat 0 vs 1, other rows, %s" % tag,
            lambda seed, s, p=paired: spearman(rollout_labels(s, 0, oc(s), p), rollout_labels(s, 1, oc(s), p)))
        add("random prefix (16 probe rows, mean of 2 repeats) vs single step (other rows), %s" % tag,
            lambda seed, s, p=paired: spearman(rollout_labels(s, 0, pc(s), p) + rollout_labels(s, 1, pc(s), p),
                                               np.asarray(s["single"])[:, n_probe:].mean(1)))
        add("random prefix (16 probe rows, one repeat) vs single step (16 probe rows), %s" % tag,
            lambda seed, s, p=paired: spearman(rollout_labels(s, 0, pc(s), p), probe_label(s["single"])))

    # momentum carry-over: regress the random-prefix label on the single-step labels of c and its prefix
    def carry(seed, s):
        single = np.asarray(s["single"])[:, n_probe:].mean(1)
        x, y = [], []
        for j in range(len(s["rollout"])):
            for c, r in enumerate(s["rollout"][j]):
                pre = r["prefix"]
                x.append([single[c]] + [single[k] for k in reversed(pre)])
                y.append(np.asarray(r["delta"])[n_probe:].mean())
        x, y = np.asarray(x), np.asarray(y)
        x = np.column_stack([x, np.ones(len(y))])
        w, *_ = np.linalg.lstsq(x, y, rcond=None)
        return w[:-1] / w[0]
    if has_rollouts:
      ws = np.mean([carry(seed, s) for seed, s in snaps], axis=0)
      rows.append(("carry-over: weight of the rows 1,2,3 steps before / own row (other rows)",
                 float(ws[1]), float(ws[2]), float(ws[3])))

    # C. first-order labels and the prior
    add("graddot (16 probe rows) vs single step (16 probe rows)",
        lambda seed, s: spearman(s["graddot_probe"], probe_label(s["single"])))
    add("graddot (other rows) vs single step (other rows)",
        lambda seed, s: spearman(s["graddot_other"], np.asarray(s["single"])[:, n_probe:].mean(1)))
    add("graddot (other rows) vs single step (16 probe rows)",
        lambda seed, s: spearman(s["graddot_other"], probe_label(s["single"])))
    add("plain gradient dot (no preconditioner, other rows) vs single step (other rows)",
        lambda seed, s: spearman(s["graddot_plain_other"], np.asarray(s["single"])[:, n_probe:].mean(1)))
    add("importance prior vs single step (16 probe rows)", lambda seed, s: spearman(s["prior"], probe_label(s["single"])))
    add("importance prior vs single step (other rows)",
        lambda seed, s: spearman(s["prior"], np.asarray(s["single"])[:, n_probe:].mean(1)))
    if has_rollouts:
      add("importance prior vs random-prefix label (16 probe rows, repeat 0)",
        lambda seed, s: spearman(s["prior"], rollout_labels(s, 0, pc(s), False)))
    add("importance prior vs graddot (other rows)", lambda seed, s: spearman(s["prior"], s["graddot_other"]))

    print("%-110s %7s %7s %7s" % ("measure (Spearman unless said)", "mean", "min", "max"))
    for name, m, lo, hi in rows:
        print("%-110s %7.3f %7.3f %7.3f" % (name, m, lo, hi))

    if all("cand_loss" in s for _, s in snaps):
        live_model_side(snaps, n_probe)
    model_transfer(snaps, n_probe)
    if settings.get("fixed_candidates"):
        same_rows(snaps, n_probe)

    # D. model side, labels fixed
    labels = [("single-step labels, 16 probe rows", lambda s: probe_label(s["single"])),
              ("single-step labels, other rows", lambda s: np.asarray(s["single"])[:, n_probe:].mean(1))]
    if has_rollouts:
        labels.append(("random-prefix labels, 16 probe rows (repeat 0)", lambda s: rollout_labels(s, 0, pc(s), False)))
    for title, label_of in labels:
        print("\nmodel side, 8-fold CV, held-out Spearman against %s (mean, min, max over %d snapshots)" % (title, len(snaps)))
        res = model_cv([s for _, s in snaps], label_of)
        for name, (m, lo, hi) in sorted(res.items(), key=lambda kv: -kv[1][0]):
            print("  %-50s %7.3f %7.3f %7.3f" % (name, m, lo, hi))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--pool", default="data/pool-dev/pool.jsonl")
    ap.add_argument("--reference", default="data/pool-dev/reference.jsonl")
    ap.add_argument("--seeds", default="100,101")
    ap.add_argument("--out-dir", default=None, help="default BUILD/probe-label-study")
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--extra", default="", help="more probe_label_study flags")
    ap.add_argument("--reuse", action="store_true", help="analyse existing study files")
    a = ap.parse_args()
    a.out_dir = a.out_dir or os.path.join(a.build, "probe-label-study")
    os.makedirs(a.out_dir, exist_ok=True)
    studies = []
    for seed in [int(x) for x in a.seeds.split(",")]:
        path = os.path.join(a.out_dir, "study-s%d.json" % seed)
        if not (a.reuse and os.path.exists(path)):
            run_study(a, seed, path)
        with open(path) as f:
            studies.append((seed, json.load(f)))
    analyse(studies)


if __name__ == "__main__":
    main()
