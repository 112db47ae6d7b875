#!/usr/bin/env bash
# The image study: prepare the machine, then `python -m bench` with these arguments (none: the full
# study, results in bench/results/latest/; --quick: a few minutes; `reliability`, `check DIR`, ...: the
# other sub-commands, see `python -m bench --help`).
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
$PY -m bench "$@"
