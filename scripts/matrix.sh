#!/usr/bin/env bash
# The engine matrix: fresh Debian machines (scripts/machine.sh), each doing what a new user does with the images:
#
#   bash scripts/matrix.sh [ENTRY...]      ENTRY: bookworm, trixie, testing, testing-containerd (default: the last three)
#
# In each machine: scripts/setup.sh installs and starts its engine, the images are built, the image tests run (the
# README's "Try it", every image under the real CLI, micro, the SBOMs, the sizes read from the layers, the bench
# against that engine as a remote one), and `bench compare --quick` measures the three images, whose report
# `bench check` must find complete. An entry ending in -containerd runs its engine on the containerd image store. Each machine's output goes to
# $MATRIX_LOGS/ENTRY.log (default /tmp/hello-api-matrix); a table of engines, clients, builders, stores and
# results ends the run. The exit status is 1 if any entry failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ $# -gt 0 ] || set -- trixie testing testing-containerd
logs=${MATRIX_LOGS:-/tmp/hello-api-matrix}
mkdir -p "$logs"

# What a new user runs, in the machine's clone of this commit.
image_tests="tests/test_readme.py tests/test_containers.py tests/test_micro.py tests/test_sbom.py"
image_tests+=" tests/test_images_content.py tests/test_images_verify.py tests/test_bench_remote_engine.py tests/test_registry.py"
# This machine's platform only: the arm64 images under QEMU are CI's main run's (their bases take minutes more).
newcomer="HELLO_API_PLATFORMS=linux/\$(dpkg --print-architecture) bash scripts/test.sh -q -m 'not emulated' $image_tests && \
bash scripts/bench.sh compare --quick slim=hello-api:slim distroless=hello-api:distroless micro=hello-api:micro \
--url /hello/you --output /tmp/matrix-compare && bash scripts/bench.sh check /tmp/matrix-compare"

rows=()
failed=0
for entry in "$@"; do
  release=${entry%-containerd}
  config=""
  [ "$entry" = "$release" ] || config='{"features": {"containerd-snapshotter": true}}'
  log=$logs/$entry.log
  printf '[matrix] %s: a fresh %s machine%s (log: %s)\n' "$entry" "$release" \
    "${config:+ on the containerd image store}" "$log" >&2
  started=$SECONDS
  status=0
  MACHINE_DOCKERD_CONFIG=$config bash scripts/machine.sh "$release" bash -c "$newcomer" >"$log" 2>&1 || status=$?
  minutes=$(( (SECONDS - started + 30) / 60 ))
  # setup.sh's own line names the engine, its store, the client and the builder it chose
  engine=$(grep -m1 '^\[setup\] Docker engine' "$log" | sed 's/^\[setup\] //' || true)
  passed=$(grep -Eo '[0-9]+ passed' "$log" | tail -1 || true)
  if [ "$status" = 0 ]; then result="ok: ${passed:-?}, compare checked"; else result="FAILED ($status)"; failed=1; fi
  rows+=("| $entry | ${engine:-engine not reached} | $result | $minutes min |")
  [ "$status" = 0 ] || tail -30 "$log" >&2
done

printf '\n| machine | engine, store, client, builder | result | time |\n|---|---|---|---|\n'
printf '%s\n' "${rows[@]}"
exit "$failed"
