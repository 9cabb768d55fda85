#!/usr/bin/env bash
# Builds the embedded default corpus from Debian's r-cran-janeaustenr (no R needed).
#
#   scripts/prepare-corpus.sh [OUT_DIR]
#
# OUT_DIR defaults to $GROUPMATES_CORPUS_DIR, else <repo>/data/corpus (gitignored). Writes:
#   austen.jsonl          Pride and Prejudice + Persuasion, one {"text","source","id"} object per
#                         ~3 KB chunk of whole paragraphs (chunks never cross a chapter)
#   austen_heldout.jsonl  Emma, chapters 1-21 (~320 KB): the held-out reference set, never in the corpus
#   austen.model/.vocab   SentencePiece unigram, vocab 4096, pad=0 unk=1 bos=2 eos=3, trained on
#                         austen.jsonl's paragraphs (deterministic: one thread, no shuffling, and
#                         run from a fixed relative path because the model embeds its input path)
#   PROVENANCE.txt        package, version, books, sizes, licence, checksums, recipe hash
#
# Idempotent: if PROVENANCE.txt records the same recipe (package version + these scripts) and all
# outputs exist, it only prints the summary. Safe to run concurrently: jobs serialise on a lock
# file in OUT_DIR, and each output appears by an atomic rename, so readers never see half a file.
# Needs apt-get, dpkg, spm_train (package sentencepiece) and /usr/bin/python3; root only if the
# apt lists need an `apt-get update`. Takes a few seconds.
set -euo pipefail

start_ns=$(date +%s%N)
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
out="${1:-${GROUPMATES_CORPUS_DIR:-$repo/data/corpus}}"
py=/usr/bin/python3
pkg=r-cran-janeaustenr
books=prideprejudice,persuasion
heldout_book=emma
heldout_bytes=300000
chunk_bytes=3000
spm_args=(--vocab_size=4096 --model_type=unigram --character_coverage=1.0
  --pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3
  --input_sentence_size=2000000 --shuffle_input_sentence=false --num_threads=1
  --max_sentence_length=16384 --minloglevel=1)
outputs=(austen.jsonl austen_heldout.jsonl austen.model austen.vocab)

die() { echo "prepare-corpus: error: $*" >&2; exit 1; }
for tool in apt-get dpkg-deb spm_train sha256sum flock; do
  command -v "$tool" >/dev/null || die "$tool not found (spm_train: apt-get install sentencepiece)"
done
[ -x "$py" ] || die "$py not found"

mkdir -p "$out"
out="$(cd "$out" && pwd)"
exec 9>"$out/.prepare-corpus.lock"
flock 9
rm -rf "$out"/.staging.*   # left by a killed run; we hold the lock, so nobody else is staging

# The recipe: everything that determines the outputs except the package version (added below).
recipe_base="$( { cat "$here/prepare-corpus.sh" "$here/extract_austen.py"; echo "$books $heldout_book $heldout_bytes $chunk_bytes ${spm_args[*]}"; } | sha256sum | cut -c1-16)"

summary_line() {
  local dt=$(( ($(date +%s%N) - start_ns) / 1000000 ))
  "$py" - "$out" "$1" "$dt" <<'EOF'
import json, os, sys
out, state, ms = sys.argv[1], sys.argv[2], int(sys.argv[3])
def size(n): return os.path.getsize(os.path.join(out, n))
def docs(n): return sum(1 for _ in open(os.path.join(out, n), encoding="utf-8"))
print("prepare-corpus: %s in %.1f s: %s: austen.jsonl %d B (%d docs), austen_heldout.jsonl %d B (%d docs), "
      "austen.model %d B" % (state, ms / 1000, out, size("austen.jsonl"), docs("austen.jsonl"),
                             size("austen_heldout.jsonl"), docs("austen_heldout.jsonl"), size("austen.model")))
EOF
}

# Up to date? (The package version is only known after the download, so compare the base recipe
# and trust the recorded version: a new Debian package version is picked up on the next change of
# this script or by deleting PROVENANCE.txt.)
if [ -f "$out/PROVENANCE.txt" ] && grep -q "^recipe: $recipe_base-" "$out/PROVENANCE.txt"; then
  all=1
  for f in "${outputs[@]}"; do [ -s "$out/$f" ] || all=0; done
  if [ "$all" = 1 ]; then
    summary_line "up to date"
    exit 0
  fi
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/prepare-corpus.XXXXXX")"
stage="$(mktemp -d "$out/.staging.XXXXXX")"   # same filesystem as $out: mv is an atomic rename
trap 'rm -rf "$work" "$stage"' EXIT

# apt-get download runs as _apt when invoked by root: let it write into the work directory.
chmod 755 "$work"
if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$work"; fi
(
  cd "$work"
  if ! apt-get download -q "$pkg" >download.log 2>&1; then
    echo "prepare-corpus: apt-get download failed; running apt-get update and retrying" >&2
    [ "$(id -u)" = 0 ] || { cat download.log >&2; die "apt-get update needs root"; }
    apt-get update -q >update.log 2>&1 || { cat update.log >&2; die "apt-get update failed"; }
    apt-get download -q "$pkg" >download.log 2>&1 || { cat download.log >&2; die "apt-get download $pkg failed"; }
  fi
)
deb="$(ls "$work"/${pkg}_*.deb | head -n1)"
[ -f "$deb" ] || die "no .deb downloaded for $pkg"
version="$(dpkg-deb -f "$deb" Version)"
deb_sha="$(sha256sum "$deb" | cut -d' ' -f1)"
dpkg-deb -x "$deb" "$work/x"
rdb="$(find "$work/x" -path '*/janeaustenr/data/Rdata.rdb' | head -n1)"
[ -f "$rdb" ] || die "data/Rdata.rdb not found in $deb"

summary_json="$("$py" "$here/extract_austen.py" --rdb "$rdb" --out-dir "$stage" --books "$books" \
  --heldout-book "$heldout_book" --heldout-bytes "$heldout_bytes" --chunk-bytes "$chunk_bytes")"

# Relative paths: the model records its input and prefix, which must not vary between runs.
(cd "$stage" && spm_train --input=austen_train.txt --model_prefix=austen "${spm_args[@]}" >spm_train.log 2>&1) \
  || { tail -n 20 "$stage/spm_train.log" >&2; die "spm_train failed"; }

{
  echo "groupmates embedded default corpus (generated by scripts/prepare-corpus.sh; do not edit)"
  echo "recipe: $recipe_base-$version"
  echo "package: $pkg $version (Debian; .deb sha256 $deb_sha)"
  echo "upstream: janeaustenr 1.0.0 by Julia Silge, https://cran.r-project.org/package=janeaustenr"
  echo "licence: the novels' text is in the public domain (Jane Austen, 1811-1818; Project Gutenberg"
  echo "  transcriptions); the R package and its Debian packaging are MIT-licensed."
  echo "extraction: data/Rdata.rdb + .rdx parsed by scripts/extract_austen.py (R XDR serialisation reader),"
  echo "  lines joined into paragraphs, _italic_ marks dropped, front matter / VOLUME / FINIS lines dropped,"
  echo "  paragraphs grouped into ~${chunk_bytes}-byte documents within a chapter; id = <book>/ch<NN>/<chunk>."
  "$py" - "$summary_json" <<'EOF'
import json, sys
s = json.loads(sys.argv[1])
titles = {"prideprejudice": "Pride and Prejudice (1813)", "persuasion": "Persuasion (1818)", "emma": "Emma (1815)",
          "mansfieldpark": "Mansfield Park (1814)", "northangerabbey": "Northanger Abbey (1818)",
          "sensesensibility": "Sense and Sensibility (1811)"}
print("austen.jsonl: %d bytes; corpus books:" % s["austen.jsonl"])
for b, v in s["books"].items():
    print("  %s [source austen/%s]: all %d chapters, %d documents, %d bytes of text" %
          (titles.get(b, b), b, v["chapters"], v["docs"], v["text_bytes"]))
print("austen_heldout.jsonl: %d bytes; held-out reference set (no overlap with the corpus):" % s["austen_heldout.jsonl"])
for b, v in s["heldout"].items():
    print("  %s [source austen/%s]: chapters %s (%d of the novel's 55), %d documents, %d bytes of text" %
          (titles.get(b, b), b, v["chapters"], v["n_chapters"], v["docs"], v["text_bytes"]))
EOF
  echo "austen.model / austen.vocab: spm_train (sentencepiece $(dpkg-query -W -f='${Version}' sentencepiece 2>/dev/null || echo '?'))" \
    "on austen.jsonl's paragraphs, one per line: ${spm_args[*]}"
  echo "sha256:"
  (cd "$stage" && sha256sum "${outputs[@]}" | sed 's/^/  /')
} >"$stage/PROVENANCE.txt"

for f in "${outputs[@]}" PROVENANCE.txt; do   # PROVENANCE last: it vouches for the others
  chmod 644 "$stage/$f"
  mv -f "$stage/$f" "$out/$f"
done
summary_line "built"
