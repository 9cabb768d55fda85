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

    # B. context
    add("shared prefix (16 probe rows) vs no prefix (16 probe rows)",
        lambda seed, s: np.mean([spearman(probe_label(c["delta"]), probe_label(s["single"])) for c in s["shared"]]))
    add("shared prefix (other rows) vs no prefix (other rows)",
        lambda seed, s: np.mean([spearman(np.asarray(c["delta"])[:, n_probe:].mean(1),
                                          np.asarray(s["single"])[:, n_probe:].mean(1)) for c in s["shared"]]))
    if all(len(s["shared"]) > 1 for _, s in snaps):
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
    for paired in (False, True):
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
    add("importance prior vs random-prefix label (16 probe rows, repeat 0)",
        lambda seed, s: spearman(s["prior"], rollout_labels(s, 0, pc(s), False)))
    add("importance prior vs graddot (other rows)", lambda seed, s: spearman(s["prior"], s["graddot_other"]))

    print("%-110s %7s %7s %7s" % ("measure (Spearman unless said)", "mean", "min", "max"))
    for name, m, lo, hi in rows:
        print("%-110s %7.3f %7.3f %7.3f" % (name, m, lo, hi))

    # D. model side, labels fixed
    for title, label_of in (
            ("single-step labels, 16 probe rows", lambda s: probe_label(s["single"])),
            ("single-step labels, other rows", lambda s: np.asarray(s["single"])[:, n_probe:].mean(1)),
            ("random-prefix labels, 16 probe rows (repeat 0)", lambda s: rollout_labels(s, 0, pc(s), False))):
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
