#!/usr/bin/env bash
# The image study: prepare the machine, then `python -m bench` with these arguments (none: the full
# study, results in bench/results/latest/; --quick: a few minutes; `reliability`, `check DIR`, ...: the
# other sub-commands, see `python -m bench --help`).
caller="$PWD"  # paths on the command line (--output, --build) are read from here, not from the checkout
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"  # (it works in the checkout)
checkout="$PWD"
cd "$caller"
PYTHONPATH="$checkout${PYTHONPATH:+:$PYTHONPATH}" "$checkout/$PY" -m bench "$@"
