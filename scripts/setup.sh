# Sourced by test.sh and bench.sh (or run alone): make this machine ready, then export DOCKER and PY.
#  - a Docker engine: use the one that answers; else, as root on Debian/Ubuntu, install docker.io and
#    start dockerd (the machines this project is built on start with none);
#  - a Docker client that can use BuildKit (a client without the buildx plugin cannot);
#  - debootstrap and wrk where apt can install them (local bases, load tests);
#  - .venv with the project and its test tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

apt_install() {
  local missing=()
  for package in "$@"; do dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

choose_client() {
  if [ -n "${DOCKER:-}" ]; then return; fi
  # Docker's own client needs the buildx plugin for BuildKit; Debian's docker.io client has it built in.
  if command -v docker >/dev/null && docker buildx version >/dev/null 2>&1; then DOCKER=docker
  elif [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker
  else DOCKER=docker; fi
}

engine_answers() { $DOCKER version --format '{{.Server.Version}}' >/dev/null 2>&1; }

start_engine() {
  local log="${TMPDIR:-/tmp}/hello-api-dockerd.log"
  say "starting dockerd (log: $log)"
  nohup dockerd >"$log" 2>&1 &
  for _ in $(seq 60); do engine_answers && return 0; sleep 1; done
  tail -n 20 "$log" >&2 || true
  die "dockerd did not answer within 60 s; its log is above ($log)"
}

if can_apt; then
  # local bases; the load generator; the README's examples; the venv (Debian ships venv apart from python3)
  apt_install debootstrap wrk curl ca-certificates python3 python3-venv
fi
choose_client
if ! engine_answers; then
  can_apt || die "no Docker engine answers to '$DOCKER version': start Docker (Desktop or dockerd), or set DOCKER"
  apt_install docker.io
  unset DOCKER
  choose_client
  start_engine
fi
export DOCKER DOCKER_BUILDKIT=1
say "Docker engine $($DOCKER version --format '{{.Server.Version}}') via $DOCKER"

# Behind a TLS-intercepting proxy the system bundle holds its CA; builds hand it to pip as a secret.
if [ -z "${PIP_CA_BUNDLE:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  export PIP_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
fi

if [ ! -x .venv/bin/pip ]; then  # pip, not python: a venv made without ensurepip has python only
  say "creating .venv"
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q -e '.[test]'
PY=.venv/bin/python
export PY
