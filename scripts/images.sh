#!/usr/bin/env bash
# The images: prepare the machine, then `python -m images` with these arguments (`build`, `build --offline`,
# `bases`, `verify IMAGE`, `dockerfiles`: see `python -m images --help`).
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
$PY -m images "$@"
