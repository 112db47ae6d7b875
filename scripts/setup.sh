# Sourced by test.sh, bench.sh and images.sh (or run alone): make this machine ready, then export DOCKER and PY.
#  - a Docker engine: use the one that answers; else, as root on Debian/Ubuntu, install docker.io and
#    start dockerd (the machines this project is built on start with none);
#  - a Docker client that builds with BuildKit: one with the buildx plugin (installing docker-cli and
#    docker-buildx where the release ships them apart, as Debian 13 does), or a 20.10 client (built in);
#  - debootstrap, wrk, docker-registry and skopeo where apt can install them (local bases, load tests, a registry),
#    and QEMU for the other architecture's images;
#  - .venv with the project and its test tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

apt_updated=""
apt_update_once() {
  [ -n "$apt_updated" ] && return 0
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  apt_updated=yes
}

apt_install() {
  local missing=()
  for package in "$@"; do dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "apt-get install ${missing[*]}"
  apt_update_once
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Install those of the packages that this release has (Debian 13 ships docker-cli and docker-buildx apart from
# docker.io; Debian 12 has neither, its docker.io holds the client).
apt_install_available() {
  local available=()
  apt_update_once
  for package in "$@"; do apt-cache show "$package" >/dev/null 2>&1 && available+=("$package"); done
  [ ${#available[@]} -eq 0 ] || apt_install "${available[@]}"
}

# Building needs BuildKit. A client since 23.0 has it only through the buildx plugin (without it, `docker build`
# stops: "BuildKit is enabled but the buildx component is missing or broken"); a 20.10 client has it built in.
client_version() { $1 version --format '{{.Client.Version}}' 2>/dev/null || true; }
has_buildx() { $1 buildx version >/dev/null 2>&1; }
has_builtin_buildkit() { case "$(client_version "$1")" in 19.*|20.*) return 0 ;; *) return 1 ;; esac; }

docker_clients() {  # every docker on PATH, then Debian's, each once
  { type -ap docker || true; echo /usr/bin/docker; } | while read -r path; do
    if [ -x "$path" ]; then readlink -f "$path"; fi
  done | awk '!seen[$0]++'
}

choose_client() {  # DOCKER: as the caller set it, else the first client that builds with BuildKit, else empty
  if [ -n "${DOCKER_CHOSEN_BY_CALLER:-}" ]; then return; fi
  local client
  DOCKER=""
  for client in $(docker_clients); do has_buildx "$client" && { DOCKER=$client; return; }; done
  for client in $(docker_clients); do has_builtin_buildkit "$client" && { DOCKER=$client; return; }; done
  return 0  # none: the caller installs one, or says what to install
}

any_client() { docker_clients | head -n 1; }

engine_answers() { local client=${DOCKER:-$(any_client)}; [ -n "$client" ] && $client version --format '{{.Server.Version}}' >/dev/null 2>&1; }

start_engine() {
  local log="${TMPDIR:-/tmp}/hello-api-dockerd.log"
  say "starting dockerd (log: $log)"
  nohup dockerd >"$log" 2>&1 &
  for _ in $(seq 60); do engine_answers && return 0; sleep 1; done
  tail -n 20 "$log" >&2 || true
  die "dockerd did not answer within 60 s; its log is above ($log)"
}

builder_in_use() {
  if has_buildx "$DOCKER"; then echo "buildx $($DOCKER buildx version | awk '{print $2}')"
  elif has_builtin_buildkit "$DOCKER"; then echo "the client's built-in BuildKit"
  else return 1; fi
}

image_store() {  # what `docker image inspect` sizes mean depends on it; the bench's own reading (images/docker.py)
  DOCKER=$DOCKER python3 -c 'from images.docker import image_store; print(image_store())' 2>/dev/null || echo unknown
}

# The arm64 images (amd64 on an arm64 machine) build and run here under QEMU: the kernel hands the other
# architecture's binaries to Debian's static qemu through binfmt_misc (global to the kernel, as Docker Desktop
# sets it up). Debian 12 and 13 ship it as qemu-user-static, testing as qemu-user-binfmt; without systemd to
# read /usr/lib/binfmt.d, the entry is written to binfmt_misc's register file here.
enable_emulation() {
  local qemu binfmt=/proc/sys/fs/binfmt_misc
  case "$(uname -m)" in x86_64) qemu=aarch64 ;; aarch64) qemu=x86_64 ;; *) return 0 ;; esac
  [ -e "$binfmt/qemu-$qemu" ] && return 0
  if [ ! -e "$binfmt/register" ] && ! mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null; then
    say "cannot mount $binfmt: no $qemu emulation, so no image for another architecture builds here"
    return 0
  fi
  apt_update_once
  if apt-cache show qemu-user-static >/dev/null 2>&1; then apt_install qemu-user-static; else apt_install qemu-user-binfmt; fi
  local conf=/usr/lib/binfmt.d/qemu-$qemu.conf
  if [ ! -e "$binfmt/qemu-$qemu" ] && [ -f "$conf" ]; then cat "$conf" >"$binfmt/register" || true; fi
  if [ -e "$binfmt/qemu-$qemu" ]; then
    say "$qemu binaries run under $(sed -n 's/^interpreter //p' "$binfmt/qemu-$qemu")"
  else
    say "no $qemu emulation ($conf could not be registered): no image for another architecture builds here"
  fi
}

[ -n "${DOCKER:-}" ] && DOCKER_CHOSEN_BY_CALLER=yes
if can_apt; then
  # local bases; the load generator; the README's examples; the venv (Debian ships venv apart from python3);
  # a registry on this machine and a second reader of it (README, "From a registry")
  apt_install debootstrap wrk curl ca-certificates python3 python3-venv docker-registry skopeo
  enable_emulation
fi
choose_client
if ! engine_answers; then
  can_apt || die "no Docker engine answers to '${DOCKER:-docker} version': start Docker (Desktop or dockerd), or set DOCKER"
  apt_install docker.io
  apt_install_available docker-cli docker-buildx
  choose_client
  start_engine
fi
if [ -z "$DOCKER" ] && can_apt; then
  apt_install_available docker-buildx  # an engine answers, but no client here has BuildKit
  choose_client
fi
[ -n "$DOCKER" ] || die "no Docker client here builds with BuildKit ($(docker_clients | tr '\n' ' ')): install the buildx plugin (Debian 13: apt-get install docker-buildx; elsewhere Docker's docker-buildx-plugin), or set DOCKER to a client that has it"
builder=$(builder_in_use) || die "DOCKER=$DOCKER (client $(client_version "$DOCKER")) cannot build with BuildKit: it needs the buildx plugin (Debian 13: apt-get install docker-buildx), or leave DOCKER unset"
export DOCKER DOCKER_BUILDKIT=1
say "Docker engine $($DOCKER version --format '{{.Server.Version}}'), image store $(image_store); client $($DOCKER version --format '{{.Client.Version}}') ($DOCKER), builder: $builder"

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
