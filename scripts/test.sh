#!/usr/bin/env bash
# The tests: prepare the machine, build every image (registry bases, or local ones when no registry
# answers) for this machine and, under QEMU, for the other architecture, then run the whole suite. Extra
# arguments go to pytest. HELLO_API_PLATFORMS=linux/amd64 builds that platform's images only (then
# -m 'not emulated' leaves out the tests of the other's).
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
$PY -m images build --platform "${HELLO_API_PLATFORMS:-all}"
$PY -m pytest "$@"
