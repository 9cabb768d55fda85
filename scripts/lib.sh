# scripts/lib.sh: what prepare-corpus.sh and prepare-pool.sh share. Sourced after they set
# $name (the message prefix), $start_ns, $out and the array outputs.

die() { echo "$name: error: $*" >&2; exit 1; }
warn() { echo "$name: WARNING: $*" >&2; }

# Milliseconds since $start_ns.
elapsed_ms() { echo $(( ($(date +%s%N) - start_ns) / 1000000 )); }

# Creates $out and makes it absolute; serialises jobs on $out/.$name.lock (fd 9, held until exit);
# clears staging directories left by a killed run (we hold the lock: nobody else is staging).
lock_out_dir() {
  mkdir -p "$out"
  out="$(cd "$out" && pwd)"
  exec 9>"$out/.$name.lock"
  flock 9
  rm -rf "$out"/.staging.*
}

# True if every file of the array outputs exists in $out and is not empty.
outputs_present() {
  local f
  for f in "${outputs[@]}"; do [ -s "$out/$f" ] || return 1; done
}

# $work: a temporary directory (mode 755); $stage: one in $out (same filesystem, so publish's mv is
# an atomic rename). Both are removed at exit.
make_work_and_stage() {
  work="$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXX")"
  stage="$(mktemp -d "$out/.staging.XXXXXX")"
  trap 'rm -rf "$work" "$stage"' EXIT
  chmod 755 "$work"
}

# apt-get download runs as _apt when invoked by root: let it write into directory $1.
let_apt_write() {
  chmod 755 "$1"
  if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$1"; fi
}

# Moves the staged files "$@" into $out with mode 644, in order: name the provenance file last,
# it vouches for the others.
publish() {
  local f
  for f; do
    chmod 644 "$stage/$f"
    mv -f "$stage/$f" "$out/$f"
  done
}
