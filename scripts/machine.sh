#!/usr/bin/env bash
# A fresh Debian machine inside this one, to try the README's commands where users run them:
#
#   bash scripts/machine.sh RELEASE [COMMAND...]     e.g. bash scripts/machine.sh trixie bash scripts/test.sh
#
# RELEASE is a Debian suite (bookworm, trixie, testing...). The machine is a container of its own, with its own
# dockerd and /var/lib/docker, made from a root that debootstrap builds from Debian's packages (kept under
# $MACHINE_CACHE, default /var/tmp/hello-api-machines, and reused). It starts as a new user's machine does: no
# engine running, this host's docker client on PATH (no buildx), and a copy of the current commit in /src.
# The COMMAND (default: bash scripts/test.sh) runs in /src as root; its exit status is this script's.
# MACHINE_KEEP=1 leaves the machine and its volume for a look (`docker exec -it hello-api-machine-RELEASE bash`).
# MACHINE_DOCKERD_CONFIG='{...}' becomes the machine's /etc/docker/daemon.json, e.g. the containerd image store:
#   MACHINE_DOCKERD_CONFIG='{"features": {"containerd-snapshotter": true}}' bash scripts/machine.sh testing
#
# It runs as root on a host with a Docker engine, debootstrap and the host's CA bundle (an intercepting proxy's CA
# reaches the machine through it). The flags below give the nested dockerd what it needs without --privileged,
# which a host lacking CAP_SYS_RESOURCE refuses.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

release=${1:?usage: bash scripts/machine.sh RELEASE [COMMAND...]}
shift
[ $# -gt 0 ] || set -- bash scripts/test.sh
cache=${MACHINE_CACHE:-/var/tmp/hello-api-machines}
name=hello-api-machine-$release
image=hello-api-machine:$release
host_bundle=/etc/ssl/certs/ca-certificates.crt

say() { printf '[machine] %s\n' "$*" >&2; }

make_root() {  # a minimal Debian root with what a new user's machine has: python3, git, curl, iptables
  local root=$cache/$release-root
  if [ -x "$root/usr/bin/python3" ]; then echo "$root"; return; fi
  say "debootstrap $release into $root (a few minutes; log: $cache/$release-debootstrap.log)"
  mkdir -p "$cache"
  rm -rf "$root"
  debootstrap --variant=minbase \
    --include=ca-certificates,python3,python3-venv,git,procps,iproute2,iptables,curl,kmod \
    "$release" "$root" http://deb.debian.org/debian >"$cache/$release-debootstrap.log" 2>&1
  # Debian testing's Release files may be past their Valid-Until where this runs; apt in the machine must not stop.
  echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99valid-until"
  echo "$root"
}

trust_host_bundle() {  # the host's CAs, kept when the machine's apt runs update-ca-certificates
  local root=$1
  cp "$host_bundle" "$root/usr/local/share/ca-certificates/host-bundle.crt"
  cp "$host_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
}

install_client() {  # the docker client a fresh machine of this project has on PATH: the host's, alone
  local root=$1 client
  client=$(command -v docker)
  cp "$(readlink -f "$client")" "$root/usr/local/bin/docker"
}

import_root() {
  local root
  root=$(make_root)
  trust_host_bundle "$root"
  install_client "$root"
  say "importing the root as $image"
  tar -C "$root" -c . | docker import - "$image" >/dev/null
}

start_machine() {
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker volume rm "$name" >/dev/null 2>&1 || true
  docker run -d --name "$name" --hostname "$release" \
    --cap-add ALL --cap-drop SYS_RESOURCE \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined --security-opt systempaths=unconfined \
    --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --device-cgroup-rule 'a *:* rwm' \
    --sysctl net.ipv6.conf.all.disable_ipv6=0 --sysctl net.ipv6.conf.lo.disable_ipv6=0 \
    -v "$name:/var/lib/docker" -e CI="${CI:-}" \
    "$image" sleep infinity >/dev/null
}

copy_commit() {  # a fresh clone of the commit: nothing uncommitted, no .venv, the history the bench reads
  local clone
  clone=$(mktemp -d)
  git clone -q . "$clone/src"
  docker exec "$name" mkdir -p /src
  tar -C "$clone/src" -c . | docker exec -i "$name" tar -x -C /src
  rm -rf "$clone"
}

remove_machine() {
  if [ "${MACHINE_KEEP:-}" = 1 ]; then say "kept: docker exec -it $name bash"; return; fi
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker volume rm "$name" >/dev/null 2>&1 || true
}

import_root
start_machine
trap remove_machine EXIT
copy_commit
if [ -n "${MACHINE_DOCKERD_CONFIG:-}" ]; then
  say "/etc/docker/daemon.json: $MACHINE_DOCKERD_CONFIG"
  docker exec "$name" mkdir -p /etc/docker
  printf '%s\n' "$MACHINE_DOCKERD_CONFIG" | docker exec -i "$name" tee /etc/docker/daemon.json >/dev/null
fi
say "$release: running $* in /src"
status=0
docker exec -w /src "$name" "$@" || status=$?
say "$release: exit status $status"
exit "$status"
