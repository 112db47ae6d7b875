"""A registry on this machine, and pushing the images to it (or to any registry you name).

The registry is Debian's `docker-registry` (the CNCF distribution registry, 2.8), run by this module on
loopback with its storage under images/.generated/registry/. An engine talks plain HTTP to a registry on
127.0.0.0/8 without being told to (Docker counts loopback as an insecure registry), so nothing is configured
for it; a registry another machine pulls from needs TLS, or that engine's `insecure-registries`
(docs/images.md, "Other architectures and a registry"). Its API is spoken here directly over HTTP, past any
proxy the environment names: the registry is on this machine or its network.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import platforms
from .docker import ROOT, DockerError, docker, image_exists, inspect_image, progress
from .variants import GENERATED, IMAGE, VARIANTS

DEFAULT_ADDRESS = "127.0.0.1:5050"  # not 5000: the service's own default port
STATE = GENERATED / "registry"  # storage/, config.yml, registry.log, registry.pid
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
PUSHED_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no HTTP(S)_PROXY for the registry


class RegistryError(RuntimeError):
    """The registry could not be started, reached or pushed to: the message says why and what to do."""


def program() -> str:
    found = shutil.which("docker-registry")
    if not found:
        raise RegistryError("docker-registry is not installed: apt-get install docker-registry (Debian 12 and "
                            "later), or run bash scripts/setup.sh")
    return found


def config_text(address: str, storage: Path) -> str:
    """docker-registry's configuration: filesystem storage, HTTP on `address`, deletes allowed (to empty it)."""
    return (f"version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n"
            f"  delete:\n    enabled: true\nhttp:\n  addr: {address}\n"
            "  headers:\n    X-Content-Type-Options: [nosniff]\n")


def answers(address: str) -> bool:
    """Whether a registry answers the distribution API's version check at `address` (GET /v2/, 200)."""
    try:
        with DIRECT.open(f"http://{address}/v2/", timeout=2) as response:
            return response.status == 200 and "Docker-Distribution-Api-Version" in response.headers
    except (OSError, urllib.error.URLError):
        return False


def running_pid(state: Path = STATE) -> int | None:
    """The pid of the registry this module started and that still runs, else None."""
    try:
        pid = int((state / "registry.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start(address: str = DEFAULT_ADDRESS, state: Path = STATE) -> None:
    """docker-registry on `address`, in the background, until stop(); storage kept in `state`/storage."""
    if answers(address):
        progress(f"a registry already answers at {address}")
        return
    state.mkdir(parents=True, exist_ok=True)
    (state / "storage").mkdir(exist_ok=True)
    config = state / "config.yml"
    config.write_text(config_text(address, (state / "storage").resolve()))
    command = [program(), "serve", str(config)]
    progress(f"$ {' '.join(command)} (log: {state / 'registry.log'})")
    with (state / "registry.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                   start_new_session=True)  # outlives this command, as a service does
    (state / "registry.pid").write_text(f"{process.pid}\n")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if answers(address):
            progress(f"registry serving at {address} (storage: {state / 'storage'})")
            return
        if process.poll() is not None:
            break
        time.sleep(0.1)
    stop(state)
    tail = (state / "registry.log").read_text(errors="replace")[-600:]
    raise RegistryError(f"docker-registry did not answer at {address} (is the port taken?); its log ends: {tail}")


def stop(state: Path = STATE) -> bool:
    """Stop the registry start() left running; whether one was running."""
    pid = running_pid(state)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.05)
    (state / "registry.pid").unlink(missing_ok=True)
    progress(f"registry stopped (pid {pid})")
    return True


@dataclass(frozen=True)
class Pushed:
    variant: str
    reference: str  # REGISTRY/REPOSITORY:TAG
    digest: str  # of the manifest, or of the index of several platforms, that the tag names there
    architectures: tuple[str, ...]

    @property
    def pinned(self) -> str:
        """The reference by digest: what a deploy file names so that every node runs the same bytes."""
        return f"{self.reference}@{self.digest}"


def push_image(local: str, remote: str) -> str:
    """`docker tag` LOCAL as REMOTE and `docker push` it: the digest of its manifest there."""
    docker("tag", local, remote)
    output = docker("push", remote, timeout=1800).stdout
    found = PUSHED_DIGEST.findall(output)
    if not found:
        raise DockerError(f"docker push {remote} printed no digest: {output[-400:]}")
    return found[-1]


def built_architectures(variant: str) -> list[str]:
    """The architectures whose image of `variant` is built here, each checked against its image's config."""
    found = []
    for architecture in platforms.ARCHITECTURES:
        tag = platforms.tagged(VARIANTS[variant].tag, architecture)
        if image_exists(tag):
            recorded = inspect_image(tag, ".Architecture")
            if recorded != architecture:
                raise RegistryError(f"{tag} is recorded as {recorded}, not {architecture}: build it again with "
                                    f"`python -m images build --platform linux/{architecture}`")
            found.append(architecture)
    return found


def push(variant: str, registry: str) -> Pushed:
    """The variant's images as REGISTRY/hello-api:VARIANT: one platform alone, or every platform built here
    each as VARIANT-ARCH, then one index of them all under VARIANT (what a multi-platform pull reads)."""
    repository = f"{registry}/{IMAGE.rsplit('/', 1)[-1]}"
    local, built = VARIANTS[variant].tag, built_architectures(variant)
    if len(built) == 1:
        remote = f"{repository}:{variant}"
        return Pushed(variant, remote, push_image(platforms.tagged(local, built[0]), remote), tuple(built))
    children = [(arch, push_image(platforms.tagged(local, arch), f"{repository}:{variant}-{arch}")) for arch in built]
    return Pushed(variant, f"{repository}:{variant}", put_index(repository, variant, children), tuple(built))


def put_index(repository: str, tag: str, children: list[tuple[str, str]]) -> str:
    """An index of the pushed manifests (architecture, digest) under REPOSITORY:TAG: Docker's manifest list
    over Docker's manifests (what a 20.10 engine pushes), else OCI's image index. Its digest."""
    entries = []
    for architecture, digest in children:
        _, media_type, raw = raw_manifest(f"{repository}@{digest}")
        entries.append({"mediaType": media_type, "digest": digest, "size": len(raw),
                        "platform": {"architecture": architecture, "os": "linux"}})
    media_type = DOCKER_LIST if all(entry["mediaType"] == DOCKER_MANIFEST for entry in entries) else OCI_INDEX
    body = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}, indent=3).encode()
    registry, _, name = repository.partition("/")
    progress(f"PUT http://{registry}/v2/{name}/manifests/{tag} ({media_type}: "
             f"{', '.join(a for a, _ in children)})")
    request = urllib.request.Request(f"http://{registry}/v2/{name}/manifests/{tag}", data=body, method="PUT",
                                     headers={"Content-Type": media_type})
    try:
        with DIRECT.open(request, timeout=30) as response:
            return response.headers["Docker-Content-Digest"]
    except urllib.error.HTTPError as refused:
        raise RegistryError(f"the registry refused the index for {repository}:{tag} ({refused.code}): "
                            f"{refused.read()[:300]!r}") from None


def push_all(variants: list[str], registry: str) -> list[Pushed]:
    """Push each variant, after checking that each is built and that a loopback registry answers."""
    missing = [v for v in variants if not image_exists(VARIANTS[v].tag)]
    if missing:
        raise RegistryError(f"not built here: {', '.join(VARIANTS[v].tag for v in missing)}: run "
                            "`python -m images build` first")
    if registry.startswith("127.") and not answers(registry):
        raise RegistryError(f"no registry answers at {registry}: start one with `python -m images registry start`")
    return [push(variant, registry) for variant in variants]


KUBERNETES = ROOT / "deploy" / "kubernetes"  # the deploy files whose nodes pull by name: pinned by digest
IMAGE_LINE = re.compile(r"^(?P<key>\s*(?:-\s+)?image:\s*)(?P<reference>\S+)\s*$", re.MULTILINE)


def variant_named(reference: str) -> str | None:
    """The project variant an image reference names (hello-api:distroless, under any registry, by tag and
    perhaps by digest too), else None."""
    name = reference.split("@", 1)[0].rsplit("/", 1)[-1]
    repository, _, tag = name.partition(":")
    return tag if repository == IMAGE.rsplit("/", 1)[-1] and tag in VARIANTS else None


def pin(pushed: list[Pushed], folder: Path = KUBERNETES) -> list[Path]:
    """Every `image:` in the manifests of `folder` that names a pushed variant, rewritten to its reference by
    digest (nothing else in the file changes); the files that changed."""
    by_variant = {p.variant: p.pinned for p in pushed}
    changed = []
    for manifest in sorted(folder.glob("*.yaml")):
        text = manifest.read_text()

        def pinned(line: re.Match) -> str:
            variant = variant_named(line["reference"])
            return line["key"] + by_variant[variant] if variant in by_variant else line[0]

        rewritten = IMAGE_LINE.sub(pinned, text)
        if rewritten != text:
            manifest.write_text(rewritten)
            changed.append(manifest)
    return changed


def raw_manifest(reference: str) -> tuple[str, str, bytes]:
    """What a pull of REGISTRY/REPOSITORY:TAG (or @DIGEST) first reads, over plain HTTP: the digest the
    registry gives, the media type and the bytes of the manifest or index."""
    registry, _, rest = reference.partition("/")
    repository, _, tag = rest.partition("@") if "@" in rest else rest.rpartition(":")
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{tag}",
                                     headers={"Accept": ", ".join(MANIFEST_TYPES)})
    with DIRECT.open(request, timeout=10) as response:
        return response.headers["Docker-Content-Digest"], response.headers["Content-Type"], response.read()


def manifest(reference: str) -> tuple[str, dict]:
    """raw_manifest()'s digest and the manifest or index, parsed."""
    digest, _, raw = raw_manifest(reference)
    return digest, json.loads(raw)
