#!/usr/bin/python3
"""Data-efficiency benchmark (issue 5): random vs individual (MATES) vs Group-MATES selection,
plus an oracle mix (in-domain documents only) as the upper bound, the same small GPT, budget and
seed for each. Drives bench_efficiency (C++, one training run per invocation).

    bench/bench_efficiency.py [--build build] [--pool POOL.jsonl --reference REF.jsonl]
                              [--seeds 0,1,2] [--out-dir DIR] [--steps 500] ...

Data: by default the pool of `make prepare-pool` (data/pool/pool.jsonl + reference.jsonl; built
with scripts/prepare-pool.sh if missing). A user's own pool and reference set: --pool and
--reference (JSONL with a "text" field; "kind"/"source"/"dup_of" are optional and only used to
report what each method selected; the oracle mix needs kind == "in_domain" lines, or
--oracle-pool PATH, else it is skipped).

The pool's tokenizer: SentencePiece unigram trained with spm_train on the pool's text (deterministic
flags, bounded input), cached in --data-dir under a key of the pool's bytes and the flags, written
atomically. The oracle's pool (in-domain lines of the pool) is written there once too.

Writes into --out-dir: runs/<method>-s<seed>.json (the C++ results), curves.csv (reference-loss
curves), efficiency.png (the plot), summary.json; prints per-seed figures and, last,
RESULT token_ratio_vs_random=<r> compute_ratio_vs_random=<c> wall_ratio_vs_random=<w> group_vs_individual=<g>
group_vs_importance=<v> dup_ratio=<d> spearman=<s> random_self_ratio=<q> group_vs_importance_no_replay=<v0>
spearman_whole_head=<sw> spearman_prior=<sp>
(means over seeds; definitions in issues 5 and 13 and in the summary printed above it).
"""
import argparse
import csv
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
METHODS = ["random", "importance", "importance_no_replay", "individual_topk", "group", "group_no_relations",
           "group_no_clusters", "group_no_prior", "oracle"]
ALL_METHODS = METHODS + ["individual", "group_no_probes", "group_no_gate", "group_no_replay"]  # opt-in: --methods ...
# Methods the binary runs under another name, with these arguments after --extra's: the oracle is the plain loader
# over the in-domain lines; the *_no_replay runs set SelectionConfig.replay_share = 0 (importance_no_replay is the
# cheap peer as a user would write it: DSIR-style importance resampling alone).
BINARY_METHOD = {"oracle": ("plain", []), "importance_no_replay": ("importance", ["--replay-share", "0"]),
                 "group_no_replay": ("group", ["--replay-share", "0"])}
MODEL_METHODS = {"individual", "individual_topk", "group", "group_no_relations", "group_no_clusters", "group_no_prior",
                 "group_no_replay"}
LABELS = {"random": "random", "importance": "importance (DSIR)", "importance_no_replay": "DSIR, no replay",
          "group_no_replay": "GM no replay", "individual": "MATES (Gumbel)",
          "individual_topk": "MATES (top-k)", "group": "Group-MATES", "group_no_relations": "GM no relations",
          "group_no_clusters": "GM no clusters", "group_no_prior": "GM no prior", "group_no_probes": "GM no probes", "group_no_gate": "GM no gate", "oracle": "oracle (in-domain)"}
KINDS = ["in_domain", "clean_other", "off_domain", "noisy", "near_dup"]
SMOOTH = 3  # final loss = mean of the last 3 evaluations


def log(msg):
    print(msg, flush=True)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(REPO, "build"), help="CMake build dir with bench/bench_efficiency")
    ap.add_argument("--binary", help="path of bench_efficiency (default BUILD/bench/bench_efficiency)")
    ap.add_argument("--pool", help="candidate pool JSONL (default data/pool/pool.jsonl, built if missing)")
    ap.add_argument("--reference", help="held-out reference set JSONL (default data/pool/reference.jsonl)")
    ap.add_argument("--oracle-pool", help="JSONL of the oracle mix (default: the pool's kind == in_domain lines)")
    ap.add_argument("--data-dir", help="tokenizer + oracle pool cache (default BUILD/bench-efficiency/data)")
    ap.add_argument("--out-dir", help="results (default BUILD/bench-efficiency)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="methods to run (importance_no_replay and group_no_replay set --replay-share 0 themselves: "
                         "with --replay-share in --extra, leave them out)")
    ap.add_argument("--steps", type=int, default=400, help="trainer steps per run (the budget)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--eval-rows", type=int, default=128)
    ap.add_argument("--probe-ref-rows", type=int, default=16)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--vocab", type=int, default=2048, help="SentencePiece vocabulary of the pool's tokenizer")
    ap.add_argument("--spm-input-bytes", type=int, default=4_000_000, help="bound on spm_train's input")
    ap.add_argument("--packing", choices=["packed", "aligned"], default="packed",
                    help="candidates cut from concatenated documents (packed) or starting at a document start, "
                         "tail padded and not trained on (aligned)")
    ap.add_argument("--clusters", type=int, default=0, help="k-means clusters per window (0 = the library's default)")
    ap.add_argument("--selection-log", action="store_true", help="write each selecting run's JSONL selection log")
    ap.add_argument("--probe-budget", type=float, default=-1, help="ProbeConfig.budget (< 0 = the library's default)")
    ap.add_argument("--refresh-mode", choices=["when_ready", "at_step"], help="SelectionConfig.refresh_mode (default: the library's)")
    ap.add_argument("--encoder", choices=["hashed_ngram", "torchscript"], default="hashed_ngram",
                    help="SelectionConfig.encoder of the model-based methods")
    ap.add_argument("--encoder-path", help="--encoder torchscript: the module file (ids of the pool's tokenizer in)")
    ap.add_argument("--extra", default="", help="more bench_efficiency flags for every run (space-separated), e.g. "
                                               "'--rollout-length 4 --merge-cluster-budgets 1'")
    ap.add_argument("--reuse-runs", action="store_true",
                    help="load a run's JSON from an earlier invocation with the same --out-dir instead of running it "
                         "again (to add methods or seeds to a finished benchmark); the settings must be the same")
    ap.add_argument("--pool2", help="second pool JSONL (default data/pool2/pool.jsonl when --pool is not given; "
                                    "'none' to skip); its figures end on a line RESULT pool2 ...")
    ap.add_argument("--reference2", help="the second pool's reference set (default data/pool2/reference.jsonl)")
    return ap.parse_args()


# ------------------------------------------------------------------------------------------------
# Data


def read_pool_meta(path):
    """One entry per line of the JSONL (document index = 0-based line number): source, kind, dup_of, id."""
    meta = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                d = json.loads(line)
            except ValueError:
                meta.append(None)
                continue
            if not isinstance(d, dict):
                meta.append(None)
                continue
            meta.append({"source": str(d.get("source") or "(none)"), "kind": d.get("kind"),
                         "dup_of": d.get("dup_of"), "id": d.get("id")})
    return meta


def file_digest(path, extra=""):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    h.update(extra.encode())
    return h.hexdigest()[:16]


def spm_args(vocab):
    return ["--vocab_size=%d" % vocab, "--model_type=unigram", "--character_coverage=0.9995",
            "--pad_id=0", "--unk_id=1", "--bos_id=2", "--eos_id=3",
            "--input_sentence_size=1000000", "--shuffle_input_sentence=false", "--num_threads=1",
            "--max_sentence_length=16384", "--minloglevel=1"]


def train_tokenizer(pool, data_dir, vocab, max_bytes):
    """spm_train on the pool's text (one paragraph a line, at most max_bytes, in file order);
    cached by the pool's digest and the flags; appears atomically (rename)."""
    args = spm_args(vocab)
    key = file_digest(pool, " ".join(args) + " max_bytes=%d" % max_bytes)
    model = os.path.join(data_dir, "pool-%s.model" % key)
    if os.path.exists(model):
        log("tokenizer: %s (cached)" % model)
        return model
    if shutil.which("spm_train") is None:
        sys.exit("bench_efficiency: spm_train not found (apt-get install sentencepiece)")
    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix=".spm.", dir=data_dir)
    try:
        written = 0
        with open(pool, encoding="utf-8", errors="replace") as f, \
                open(os.path.join(tmp, "train.txt"), "w", encoding="utf-8") as out:
            for line in f:
                if written >= max_bytes:
                    break
                try:
                    text = json.loads(line).get("text")
                except (ValueError, AttributeError):
                    continue
                if not isinstance(text, str):
                    continue
                for para in text.split("\n"):
                    para = para.strip()
                    if para:
                        out.write(para[:8000] + "\n")
                        written += len(para.encode("utf-8")) + 1
        # Relative paths: the model records its input and prefix, which must not vary between runs.
        r = subprocess.run(["spm_train", "--input=train.txt", "--model_prefix=pool"] + args, cwd=tmp,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            sys.exit("bench_efficiency: spm_train failed:\n" + r.stdout[-3000:])
        os.replace(os.path.join(tmp, "pool.vocab"), os.path.join(data_dir, "pool-%s.vocab" % key))
        os.replace(os.path.join(tmp, "pool.model"), model)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log("tokenizer: trained %s in %.1f s (vocab %d, %d bytes of input)" % (model, time.time() - t0, vocab, written))
    return model


def write_oracle_pool(pool, meta, data_dir):
    """The pool's kind == in_domain lines, once per pool digest (atomic). Returns (path, line map)."""
    keep = [i for i, m in enumerate(meta) if m and m["kind"] == "in_domain"]
    if not keep:
        return None, None
    path = os.path.join(data_dir, "oracle-%s.jsonl" % file_digest(pool, "in_domain"))
    if not os.path.exists(path):
        want = set(keep)
        fd, tmp = tempfile.mkstemp(prefix=".oracle.", dir=data_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as out, open(pool, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i in want:
                    out.write(line if line.endswith("\n") else line + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    return path, keep


# ------------------------------------------------------------------------------------------------
# Figures


def smoothed(curve):
    """The curve with each loss replaced by the mean of the last SMOOTH evaluations up to it (fewer at
    the start): every method's curve, random's included, is smoothed alike before any comparison."""
    out = []
    for i, p in enumerate(curve):
        tail = [q[2] for q in curve[max(0, i - SMOOTH + 1):i + 1]]
        out.append([p[0], p[1], sum(tail) / len(tail)] + list(p[3:]))
    return out


def final_loss(curve):
    return smoothed(curve)[-1][2]


def cost_to_reach(curve, target, column):
    """Value of `column` (1 tokens, 3 wall seconds without evaluations, 4 FLOPs) at which the smoothed
    curve first reaches `target` (linear interpolation between evaluations); inf if it never does."""
    prev = None
    for p in smoothed(curve):
        loss, x = p[2], p[column]
        if loss <= target:
            if prev is None:
                return x
            x0, l0 = prev
            return x0 + (x - x0) * (l0 - target) / (l0 - loss) if l0 != loss else x
        prev = (x, loss)
    return math.inf


def tokens_to_reach(curve, target):
    return cost_to_reach(curve, target, 1)


def selection_shares(run, meta, line_map):
    """Shares of the selected rows by kind and by source; near-dup families touched."""
    by_kind, by_source, total = {}, {}, 0
    family_rows = {}
    for source, doc, count in run["selected"]:
        if line_map is not None:
            doc = line_map[doc] if doc < len(line_map) else -1
        m = meta[doc] if 0 <= doc < len(meta) and meta[doc] else {"kind": None, "source": "(unknown)", "dup_of": None, "id": None}
        kind = m["kind"] or "(unlabelled)"
        by_kind[kind] = by_kind.get(kind, 0) + count
        by_source[m["source"]] = by_source.get(m["source"], 0) + count
        fam = m["dup_of"] or (m["id"] if m["kind"] == "in_domain" else None)
        if fam is not None and (m["dup_of"] or m["kind"] == "near_dup"):
            family_rows[fam] = family_rows.get(fam, 0) + count
        total += count
    share = lambda d: {k: v / total for k, v in sorted(d.items(), key=lambda kv: -kv[1])} if total else {}
    return {"rows": total, "kind": share(by_kind), "source": share(by_source),
            "near_dup": (by_kind.get("near_dup", 0) / total) if total else math.nan,
            "dup_families": len(family_rows)}


def predicted_by_kind(run, meta):
    """Mean predicted influence u of the emitted rows (those scored by a model: not warm-up) by
    ground-truth kind: does the influence model tell the kinds apart? (lower = predicted to help)"""
    acc = {}
    for doc, u, _version in run.get("scored", []):
        if u is None:
            continue
        kind = (meta[doc]["kind"] if 0 <= doc < len(meta) and meta[doc] else None) or "(unlabelled)"
        n, t = acc.get(kind, (0, 0.0))
        acc[kind] = (n + 1, t + u)
    return {k: t / n for k, (n, t) in acc.items()}


def heldout_spearman(run, column=2):
    """Mean held-out Spearman over the run's refreshes that had a previous model to judge (the
    first refresh has none), and the last one. column 2: against the oracle's marginal labels as
    measured (s); column 3: against the labels as standardised for training, per probe and rollout
    position (the rollout-position trend removed); column 4: the prior-only model's; column 5: the learned model
    with its whole head (SelectionConfig::refresh_head_shrinkage: s is the model with the share in force)."""
    hist = [h for h in run.get("spearman_history", []) if h[1] >= 2 and len(h) > column and h[column] is not None]
    vals = [h[column] for h in hist]
    if not vals:
        last = run["selection"].get({2: "last_heldout_spearman", 3: "last_heldout_spearman_scaled"}.get(column, ""))
        return (math.nan, last if last is not None else math.nan, 0)
    return (sum(vals) / len(vals), vals[-1], len(vals))


def fmt(x, p=3):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return ("%." + str(p) + "f") % x


def mean(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return math.nan
    if any(math.isinf(x) for x in xs):
        return math.inf
    return sum(xs) / len(xs)


def plot(runs, methods, seeds, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = {"random": "tab:gray", "individual": "tab:blue", "group": "tab:red", "oracle": "tab:green"}
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for m in methods:
        curves = [runs[(m, s)]["curve"] for s in seeds if (m, s) in runs]
        if not curves:
            continue
        for c in curves:
            ax.plot([p[1] / 1e6 for p in c], [p[2] for p in c], color=colors.get(m), alpha=0.25, lw=0.8)
        n = min(len(c) for c in curves)
        xs = [curves[0][i][1] / 1e6 for i in range(n)]
        ys = [sum(c[i][2] for c in curves) / len(curves) for i in range(n)]
        ax.plot(xs, ys, color=colors.get(m), lw=2, label="%s (mean of %d seeds)" % (LABELS.get(m, m), len(curves)))
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("reference loss (held-out, nats/token)")
    ax.set_title("Data efficiency: reference loss vs training tokens")
    ax.grid(alpha=0.3)
    ax.legend()
    # zoom on the informative part: skip the first evaluations' steep drop
    finals = [p[2] for r in runs.values() for p in r["curve"][len(r["curve"]) // 4:]]
    if finals:
        lo, hi = min(finals), max(finals)
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.25 * (hi - lo))
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------


def expected_replay_share(cmd):
    """SelectionConfig.replay_share a bench_efficiency command line runs with (its last --replay-share, else the
    library's "auto": 0.5 where rows are ranked, 0 for random and the plain loader)."""
    share = None
    for i, x in enumerate(cmd):
        if x == "--replay-share" and i + 1 < len(cmd):
            share = cmd[i + 1]
        elif x.startswith("--replay-share="):
            share = x.split("=", 1)[1]
    if share is not None and float(share) >= 0:
        return float(share)
    return 0.0 if cmd[cmd.index("--method") + 1] in ("random", "plain") else 0.5


def run_pool(a, binary, out_dir, data_dir, pool, reference, seeds, methods, tag):
    """Every method x seed on one pool; returns (per-seed figures, means). Files go to out_dir/tag."""
    out_dir = os.path.join(out_dir, tag)
    os.makedirs(os.path.join(out_dir, "runs"), exist_ok=True)
    methods = list(methods)
    meta = read_pool_meta(pool)
    tokenizer = train_tokenizer(pool, data_dir, a.vocab, a.spm_input_bytes)
    oracle_pool, oracle_map = (os.path.abspath(a.oracle_pool), None) if a.oracle_pool and tag == "pool" \
        else write_oracle_pool(pool, meta, data_dir)
    if "oracle" in methods and oracle_pool is None:
        log("oracle: the pool has no kind == in_domain lines and no --oracle-pool: the oracle mix is skipped")
        methods.remove("oracle")
    log("[%s] pool %s (%d documents), reference %s; methods %s; seeds %s; %d steps x %d x %d tokens per run"
        % (tag, pool, len(meta), reference, ",".join(methods), ",".join(map(str, seeds)), a.steps, a.batch, a.seq_len))

    runs = {}
    for seed in seeds:
        for m in methods:
            out = os.path.join(out_dir, "runs", "%s-s%d.json" % (m, seed))
            binary_method, method_args = BINARY_METHOD.get(m, (m, []))
            cmd = [binary, "--pool", oracle_pool if m == "oracle" else pool, "--reference", reference,
                   "--tokenizer", tokenizer, "--method", binary_method, "--seed", str(seed),
                   "--steps", str(a.steps), "--batch", str(a.batch), "--seq-len", str(a.seq_len),
                   "--eval-every", str(a.eval_every), "--eval-rows", str(a.eval_rows),
                   "--probe-ref-rows", str(a.probe_ref_rows), "--d-model", str(a.d_model),
                   "--layers", str(a.layers), "--lr", str(a.lr), "--packing", a.packing, "--clusters", str(a.clusters),
                   "--probe-budget", str(a.probe_budget), "--out", out, "--quiet"]
            if a.refresh_mode:
                cmd += ["--refresh-mode", a.refresh_mode]
            if a.encoder != "hashed_ngram" and m in MODEL_METHODS:
                cmd += ["--encoder", a.encoder, "--encoder-path", os.path.abspath(a.encoder_path or "")]
            cmd += a.extra.split()
            if method_args and any(x == method_args[0] or x.startswith(method_args[0] + "=") for x in cmd):
                sys.exit("bench_efficiency: %s sets %s itself; leave it out of --extra" % (m, method_args[0]))
            cmd += method_args
            if a.selection_log and m in MODEL_METHODS:
                cmd += ["--log", os.path.join(out_dir, "runs", "%s-s%d.selection.jsonl" % (m, seed))]
            t0 = time.time()
            if not (a.reuse_runs and os.path.exists(out)):
                r = subprocess.run(cmd)
                if r.returncode != 0:
                    sys.exit("bench_efficiency: %s seed %d failed (exit %d): %s" % (m, seed, r.returncode, " ".join(cmd)))
            with open(out) as f:
                runs[(m, seed)] = json.load(f)
            if a.reuse_runs and runs[(m, seed)]["settings"]["pool"] != cmd[2]:
                sys.exit("bench_efficiency: %s was run on another pool; drop --reuse-runs" % out)
            recorded = runs[(m, seed)]["settings"].get("replay_share")
            if a.reuse_runs and (recorded is None or not math.isclose(recorded, expected_replay_share(cmd), abs_tol=1e-6)):
                sys.exit("bench_efficiency: %s was run with replay_share %s, this run's is %s; drop --reuse-runs"
                         % (out, runs[(m, seed)]["settings"].get("replay_share", "(not recorded)"),
                            expected_replay_share(cmd)))
            runs[(m, seed)]["driver_seconds"] = time.time() - t0
            c = runs[(m, seed)]["curve"]
            log("[%s] %-18s seed %d: final %.4f, %.0f s, overhead %.0f%% of training FLOPs" % (
                tag, m, seed, final_loss(c), time.time() - t0,
                100 * (c[-1][4] / (3 * runs[(m, seed)]["cost"]["flops_per_token"] * c[-1][1]) - 1)))

    rows_csv = []
    per_seed = []
    for seed in seeds:
        fig = {"seed": seed, "methods": {}}
        rnd = runs.get(("random", seed))
        if rnd is None:
            sys.exit("bench_efficiency: the random baseline is required")
        target = final_loss(rnd["curve"])
        budget = {1: rnd["curve"][-1][1], 3: rnd["curve"][-1][3], 4: rnd["curve"][-1][4]}
        orc = runs.get(("oracle", seed))
        for m in methods:
            run = runs[(m, seed)]
            for p in run["curve"]:
                rows_csv.append([m, seed] + p[:5])
            fl = final_loss(run["curve"])
            reach = {k: cost_to_reach(run["curve"], target, k) for k in (1, 3, 4)}
            gain = math.nan
            if orc is not None:
                denom = target - final_loss(orc["curve"])
                gain = (target - fl) / denom if denom > 0 else math.nan
            sel = selection_shares(run, meta if m != "oracle" or oracle_map is not None else [], oracle_map if m == "oracle" else None)
            model = m in MODEL_METHODS
            sp_mean, sp_last, sp_n = heldout_spearman(run) if model else (math.nan, math.nan, 0)
            sp_scaled = heldout_spearman(run, 3)[0] if model else math.nan
            sp_prior = heldout_spearman(run, 4)[0] if model else math.nan
            sp_whole = heldout_spearman(run, 5)[0] if model else math.nan
            cost, timing = run["cost"], run["timing"]
            train_flops = 3 * cost["flops_per_token"] * run["curve"][-1][1]
            waits = {k: cost[k] / timing["run_seconds_without_eval"] for k in
                     ("wait_scoring_seconds", "wait_refresh_seconds", "wait_probe_seconds", "snapshot_seconds", "selection_seconds")}
            fig["methods"][m] = {
                "predicted_u_by_kind": predicted_by_kind(run, meta) if model else {},
                "final_loss": fl, "tokens_to_random_final": reach[1], "token_ratio": reach[1] / budget[1],
                "compute_ratio": reach[4] / budget[4], "wall_ratio": reach[3] / budget[3],
                "oracle_gain_share": gain, "selection": sel, "spearman_mean": sp_mean,
                "spearman_last": sp_last, "spearman_refreshes": sp_n, "spearman_scaled_mean": sp_scaled,
                "spearman_prior_mean": sp_prior,
                "spearman_whole_head_mean": sp_whole, "head_share": run["selection"].get("head_share", math.nan),
                "seconds": timing["run_seconds_without_eval"],
                "loader_wait_share": timing["loader_wait_seconds"] / timing["run_seconds_without_eval"],
                "on_step_share": timing["on_step_seconds"] / timing["run_seconds_without_eval"],
                "wait_shares": waits,
                "overhead_share": {k: cost[k] / train_flops for k in ("probe_flops", "refresh_flops", "scoring_flops")},
                "probe_share": run["selection"]["probes"]["probe_share"],
                "probes": run["selection"]["probes"]["completed"],
                "probes_skipped_budget": cost["probes_skipped_budget"],
                "probes_skipped_busy": run["selection"]["probes"]["skipped_busy"],
                "probes_skipped_backoff": cost.get("probes_skipped_backoff", 0),
                "refreshes": run["selection"]["refreshes"], "refreshes_failed": cost["refreshes_failed"],
                "refreshes_gated": cost.get("refreshes_gated", 0),
                "prior_weight": cost["prior_weight"],
                "pad_share": run["settings"].get("pad_tokens", 0) / run["curve"][-1][1]}
        x = fig["methods"]
        g, i, v = x.get("group"), x.get("individual_topk"), x.get("importance")
        fig["r"] = g["token_ratio"] if g else math.nan
        fig["c"] = g["compute_ratio"] if g else math.nan
        fig["w"] = g["wall_ratio"] if g else math.nan
        fig["g"] = g["final_loss"] / i["final_loss"] if g and i else math.nan
        fig["v"] = g["final_loss"] / v["final_loss"] if g and v else math.nan
        v0 = x.get("importance_no_replay")
        fig["v0"] = g["final_loss"] / v0["final_loss"] if g and v0 else math.nan
        fig["d"] = (g["selection"]["near_dup"] / i["selection"]["near_dup"]
                    if g and i and i["selection"]["near_dup"] > 0 else math.nan)
        fig["s"] = g["spearman_mean"] if g else math.nan
        fig["sw"] = g["spearman_whole_head_mean"] if g else math.nan
        fig["sp"] = g["spearman_prior_mean"] if g else math.nan
        fig["q"] = x["random"]["token_ratio"]
        fig["random_final"] = target
        per_seed.append(fig)

        log("\n== [%s] seed %d: random's smoothed final reference loss %.4f (curves smoothed alike: mean of the last %d "
            "evaluations), budget %d tokens, %.3g FLOPs, %.0f s" % (tag, seed, target, SMOOTH, budget[1], budget[4], budget[3]))
        log("  %-20s %8s %7s %7s %7s %8s %7s %7s %7s %7s %6s %7s" % (
            "method", "final", "tokens", "FLOPs", "wall", "oracle%", "in_dom", "neardup", "probe", "wait", "probes", "time"))
        for m in methods:
            y = x[m]
            k = y["selection"]["kind"]
            log("  %-20s %8.4f %7s %7s %7s %7s%% %6.1f%% %6.2f%% %6.1f%% %6.1f%% %6d %6.0fs" % (
                LABELS[m], y["final_loss"], fmt(y["token_ratio"]), fmt(y["compute_ratio"]), fmt(y["wall_ratio"]),
                fmt(100 * y["oracle_gain_share"], 1), 100 * k.get("in_domain", 0), 100 * k.get("near_dup", 0),
                100 * y["overhead_share"]["probe_flops"], 100 * y["loader_wait_share"], y["probes"], y["seconds"]))
        for m in methods:
            if m in MODEL_METHODS or m.startswith("importance"):
                y = x[m]
                log("  %-20s Spearman %s (%d refreshes, scaled %s; prior-only model %s; whole head %s, share %s; "
                    "%d refreshes gated), gamma %.2f, "
                    "FLOPs over training: probes %.1f%% "
                    "refresh %.2f%% scoring %.2f%%; trainer waiting: scoring %.2f%% refresh %.2f%% probe %.2f%% "
                    "snapshot %.2f%% selecting %.2f%%; probes skipped (budget %d, busy %d, back-off %d), refreshes failed %d"
                    % (LABELS[m], fmt(y["spearman_mean"]), y["spearman_refreshes"], fmt(y["spearman_scaled_mean"]),
                       fmt(y["spearman_prior_mean"]), fmt(y["spearman_whole_head_mean"]), fmt(y["head_share"], 2),
                       y["refreshes_gated"],
                       y["prior_weight"], 100 * y["overhead_share"]["probe_flops"], 100 * y["overhead_share"]["refresh_flops"],
                       100 * y["overhead_share"]["scoring_flops"], 100 * y["wait_shares"]["wait_scoring_seconds"],
                       100 * y["wait_shares"]["wait_refresh_seconds"], 100 * y["wait_shares"]["wait_probe_seconds"],
                       100 * y["wait_shares"]["snapshot_seconds"], 100 * y["wait_shares"]["selection_seconds"],
                       y["probes_skipped_budget"], y["probes_skipped_busy"], y["probes_skipped_backoff"],
                       y["refreshes_failed"]))
        log("  seed %d: r=%s c=%s w=%s g=%s v=%s d=%s s=%s q=%s v0=%s sw=%s sp=%s" % (
            seed, fmt(fig["r"]), fmt(fig["c"]), fmt(fig["w"]), fmt(fig["g"], 4), fmt(fig["v"], 4), fmt(fig["d"]),
            fmt(fig["s"]), fmt(fig["q"]), fmt(fig["v0"], 4), fmt(fig["sw"]), fmt(fig["sp"])))

    csv_path = os.path.join(out_dir, "curves.csv")
    with open(csv_path + ".tmp", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "seed", "step", "tokens", "reference_loss", "seconds_without_eval", "flops"])
        w.writerows(rows_csv)
    os.replace(csv_path + ".tmp", csv_path)
    png = os.path.join(out_dir, "efficiency.png")
    try:
        plot(runs, methods, seeds, png)
    except ImportError as e:
        png = "(not written: %s; apt-get install python3-matplotlib)" % e

    keys = ("r", "c", "w", "g", "v", "d", "s", "q", "v0", "sw", "sp")
    res = {k: mean([f[k] for f in per_seed]) for k in keys}
    spread = {k: [f[k] for f in per_seed] for k in keys}
    summary = {"pool": pool, "reference": reference, "seeds": seeds, "methods": methods,
               "settings": runs[("random", seeds[0])]["settings"], "per_seed": per_seed, "means": res, "per_seed_values": spread}
    with open(os.path.join(out_dir, "summary.json.tmp"), "w") as f:
        json.dump(summary, f, indent=1, default=lambda x: None)
    os.replace(os.path.join(out_dir, "summary.json.tmp"), os.path.join(out_dir, "summary.json"))

    log("\n== [%s] means over %d seeds (per-seed values in brackets)" % (tag, len(seeds)))
    for m in methods:
        xs = [f["methods"][m] for f in per_seed]
        log("  %-20s final loss %.4f, tokens %s, FLOPs %s, wall %s to random's loss; oracle gain %s%%, near-dup %.2f%%, "
            "in-domain %.1f%%" % (LABELS[m], mean([y["final_loss"] for y in xs]), fmt(mean([y["token_ratio"] for y in xs])),
                                  fmt(mean([y["compute_ratio"] for y in xs])), fmt(mean([y["wall_ratio"] for y in xs])),
                                  fmt(100 * mean([y["oracle_gain_share"] for y in xs]), 1),
                                  100 * mean([y["selection"]["near_dup"] for y in xs]),
                                  100 * mean([y["selection"]["kind"].get("in_domain", 0) for y in xs])))
    for k in keys:
        log("  %s = %s  [%s]" % (k, fmt(res[k], 4), ", ".join(fmt(v, 4) for v in spread[k])))
    log("  r, c, w = Group-MATES's tokens, FLOPs (probes, refresh and scoring included) and wall clock (evaluations "
        "excluded) to reach random's final loss, over random's whole run; g = Group-MATES / MATES (top-k, same "
        "prefilter and prior) final loss; v = Group-MATES / importance resampling final loss (both with the default "
        "replay); v0 = Group-MATES / importance resampling without replay (DSIR as a user would write it); d = near-dup share "
        "Group-MATES / MATES (top-k); s = Group-MATES's held-out Spearman (mean over refreshes after the first) of its "
        "learned model as it would publish it (the share of the learned head in force, SelectionConfig::"
        "refresh_head_shrinkage); sw = the same with the whole learned head; sp = the prior-only model's; "
        "q = random's own token ratio")
    log("  curves: %s\n  plot: %s" % (csv_path, png))
    return per_seed, res


def result_line(res):
    return ("token_ratio_vs_random=%s compute_ratio_vs_random=%s wall_ratio_vs_random=%s group_vs_individual=%s "
            "group_vs_importance=%s dup_ratio=%s spearman=%s random_self_ratio=%s group_vs_importance_no_replay=%s "
            "spearman_whole_head=%s spearman_prior=%s"
            % (fmt(res["r"]), fmt(res["c"]), fmt(res["w"]), fmt(res["g"], 4), fmt(res["v"], 4), fmt(res["d"]),
               fmt(res["s"]), fmt(res["q"]), fmt(res["v0"], 4), fmt(res["sw"]), fmt(res["sp"])))


def main():
    a = parse_args()
    t_all = time.time()
    build = os.path.abspath(a.build)
    binary = a.binary or os.path.join(build, "bench", "bench_efficiency")
    if not os.access(binary, os.X_OK):
        sys.exit("bench_efficiency: %s not found; build it: cmake --build %s --target bench_efficiency" % (binary, build))
    out_dir = os.path.abspath(a.out_dir or os.path.join(build, "bench-efficiency"))
    data_dir = os.path.abspath(a.data_dir or os.path.join(out_dir, "data"))
    os.makedirs(data_dir, exist_ok=True)

    if bool(a.pool) != bool(a.reference):
        sys.exit("bench_efficiency: give both --pool and --reference (or neither for the default pool)")
    pools = []
    if a.pool:
        pools.append(("pool", os.path.abspath(a.pool), os.path.abspath(a.reference)))
    else:
        pool_dir = os.path.join(REPO, "data", "pool")
        pool, reference = os.path.join(pool_dir, "pool.jsonl"), os.path.join(pool_dir, "reference.jsonl")
        if not (os.path.exists(pool) and os.path.exists(reference)):
            subprocess.run(["bash", os.path.join(REPO, "scripts", "prepare-pool.sh"), pool_dir], check=True)
        pools.append(("pool", pool, reference))
    if a.pool2 != "none" and (a.pool2 or not a.pool):
        pool2 = os.path.abspath(a.pool2 or os.path.join(REPO, "data", "pool2", "pool.jsonl"))
        reference2 = os.path.abspath(a.reference2 or os.path.join(os.path.dirname(pool2), "reference.jsonl"))
        if not a.pool2 and not (os.path.exists(pool2) and os.path.exists(reference2)):
            subprocess.run(["bash", os.path.join(REPO, "scripts", "prepare-pool.sh"), "--variant", "pool2",
                            os.path.dirname(pool2)], check=True)
        pools.append(("pool2", pool2, reference2))
    for _, p, r in pools:
        for f in (p, r):
            if not os.path.exists(f):
                sys.exit("bench_efficiency: %s not found" % f)

    seeds = [int(s) for s in a.seeds.split(",") if s != ""]
    methods = [m for m in a.methods.split(",") if m]
    for m in methods:
        if m not in ALL_METHODS:
            sys.exit("bench_efficiency: unknown method %s (known: %s)" % (m, ", ".join(ALL_METHODS)))
    results = {}
    for tag, pool, reference in pools:
        results[tag] = run_pool(a, binary, out_dir, data_dir, pool, reference, seeds, methods, tag)[1]
    log("\n  wall time: %.0f s" % (time.time() - t_all))
    if "pool2" in results:
        log("RESULT pool2 " + result_line(results["pool2"]))
    log("RESULT " + result_line(results["pool"]))


if __name__ == "__main__":
    main()
