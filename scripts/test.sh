#!/usr/bin/env bash
# The tests: prepare the machine, build every image (registry bases, or local ones when no registry
# answers), then run the whole suite. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
$PY -m images build
$PY -m pytest "$@"
