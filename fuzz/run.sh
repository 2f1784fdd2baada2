#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds pith's libFuzzer targets with clang++ into build/fuzz and runs each one, in turn, for the given
# number of seconds on a copy of its seed corpus (fuzz/corpus/<target>/ is never modified).
#   fuzz/run.sh [seconds-per-target]      default 60
# Prints each target's execution count; exits non-zero when a target finds a crash, a leak, a timeout
# or an out-of-memory input, whose reproducer is left in build/fuzz/artifacts/<target>/.
# Environment: PITH_FUZZ_CXX (default clang++).
set -eu
cd "$(dirname "$0")/.."

seconds=${1:-60}
case "$seconds" in
  '' | *[!0-9]*) echo "run.sh: seconds-per-target must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac
targets="fuzz_safetensors fuzz_gguf fuzz_llama2c fuzz_tokenizer fuzz_model"
build=build/fuzz

cmake -S fuzz -B "$build" -DCMAKE_CXX_COMPILER="${PITH_FUZZ_CXX:-clang++}" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" --parallel 2

failed=""
summary=""
for target in $targets; do
  work="$build/work/$target"
  artifacts="$build/artifacts/$target"
  rm -rf "$work" "$artifacts"
  mkdir -p "$work" "$artifacts"
  cp fuzz/corpus/"$target"/* "$work"/
  log="$build/$target.log"
  echo "=== $target: $seconds s on a copy of fuzz/corpus/$target ($(find "$work" -type f | wc -l) seeds)"
  status=0
  "$build/$target" "$work" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
  if [ "$status" -ne 0 ] || [ -z "$runs" ]; then
    # The sanitizer or libFuzzer report, without the progress lines before it.
    sed -n '/^==[0-9]*==\|runtime error\|^pith fuzz\|uncaught exception\|terminate called\|Assertion/,$p' "$log" | head -n 80
    echo "=== $target FAILED (exit $status); reproducer: $(find "$artifacts" -type f | tr '\n' ' ')"
    failed="$failed $target"
    summary="$summary$target: FAILED\n"
  else
    echo "=== $target: $runs runs in $seconds s"
    summary="$summary$target: $runs runs\n"
  fi
done

printf "=== fuzz summary\n%b" "$summary"
if [ -n "$failed" ]; then
  echo "run.sh: crash found by:$failed (logs in $build/<target>.log)" >&2
  exit 1
fi
