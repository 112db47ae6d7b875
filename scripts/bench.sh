#!/usr/bin/env bash
# The image study: prepare the machine, then `python -m bench study`. Extra arguments go to it
# (--quick for a few-minute run). Results land in bench/results/latest/.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
$PY -m bench study "$@"
