#!/usr/bin/env bash
# run-fuzz.sh BUILD_FUZZ_DIR MODE [SECONDS]: runs every libFuzzer harness of fuzz/.
#   MODE smoke: each harness once over its seed corpus and fuzz/regressions/<harness>/ (seconds).
#   MODE run:   each harness for SECONDS / <harnesses> seconds from those inputs, new inputs kept
#               in BUILD_FUZZ_DIR/corpus/<harness>/, crashes written to BUILD_FUZZ_DIR/crashes/.
# Ends with: RESULT fuzz_targets=<n> fuzz_execs=<total> fuzz_crashes=<c> (exit 1 if c > 0).
set -uo pipefail
dir=$1 mode=$2 seconds=${3:-180}
root=$(cd "$(dirname "$0")/.." && pwd)
targets=(fuzz_megatron_idx fuzz_token_file fuzz_jsonl fuzz_zstd fuzz_line_index_cache fuzz_loader_state fuzz_blob_text
         fuzz_model_weights)
per=$(( seconds / ${#targets[@]} )); (( per < 1 )) && per=1
total_execs=0 total_crashes=0
printf '%-20s %12s %8s\n' harness executions crashes
for t in "${targets[@]}"; do
  mkdir -p "$dir/seeds/$t"; inputs=("$dir/seeds/$t")
  [[ -d $root/fuzz/regressions/$t ]] && inputs+=("$root/fuzz/regressions/$t")
  max_len=4096; [[ $t == fuzz_zstd ]] && max_len=2048  # a zstd frame may expand ~30000x
  [[ $t == fuzz_model_weights ]] && max_len=16384      # its seeds: real weights of ~9 KB
  log="$dir/logs/$t.log"; mkdir -p "$dir/logs" "$dir/crashes/$t" "$dir/corpus/$t"
  if [[ $mode == smoke ]]; then
    "$dir/$t" -runs=0 -rss_limit_mb=2048 -print_final_stats=1 "${inputs[@]}" >"$log" 2>&1
  else
    "$dir/$t" -max_total_time="$per" -max_len=$max_len -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$dir/crashes/$t/" "$dir/corpus/$t" "${inputs[@]}" >"$log" 2>&1
  fi
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  crashes=$(( rc != 0 ? 1 : 0 ))
  printf '%-20s %12s %8s\n' "$t" "${execs:-0}" "$crashes"
  (( crashes )) && { echo "== $t failed (rc $rc); log $log:"; grep -m5 -E 'ERROR|SUMMARY|Test unit written' "$log"; }
  total_execs=$(( total_execs + ${execs:-0} )); total_crashes=$(( total_crashes + crashes ))
done
echo "RESULT fuzz_targets=${#targets[@]} fuzz_execs=$total_execs fuzz_crashes=$total_crashes"
(( total_crashes == 0 ))
