"""The platforms the images are built for: this machine's own (linux/amd64 here) and one more under emulation.

An image for this machine's architecture keeps its plain tag (hello-api:micro); one for another architecture
is tagged with it (hello-api:micro-arm64), so both sit in any image store, the classic one included, which
holds one image per tag. A push joins them under one tag as an index (images/registry.py). Building or
running a foreign image needs the kernel to hand its binaries to QEMU (binfmt_misc and Debian's
qemu-user-static, which scripts/setup.sh registers).
"""

import platform
import sys
from pathlib import Path

ARCHITECTURES = ("amd64", "arm64")  # Debian's and Docker's names alike
KERNEL_NAMES = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "amd64": "amd64"}
QEMU_NAMES = {"amd64": "x86_64", "arm64": "aarch64"}
BINFMT = Path("/proc/sys/fs/binfmt_misc")


def native() -> str:
    """This machine's architecture, by Debian's and Docker's name."""
    return KERNEL_NAMES.get(platform.machine(), platform.machine())


def is_native(architecture: str) -> bool:
    return architecture == native()


def tagged(tag: str, architecture: str) -> str:
    """The tag of `tag`'s image for `architecture`: unchanged for this machine's, else with -ARCH appended."""
    return tag if is_native(architecture) else f"{tag}-{architecture}"


def platform_option(architecture: str) -> list[str]:
    """A build's --platform for a foreign architecture (none for this machine's: builds stay as they were)."""
    return [] if is_native(architecture) else ["--platform", f"linux/{architecture}"]


class NoEmulation(RuntimeError):
    """The kernel cannot run the architecture's binaries: the message says what to install or mount."""


def runnable() -> list[str]:
    """This machine's architecture, then every other one whose binaries QEMU runs here."""
    others = [a for a in ARCHITECTURES if not is_native(a)]
    return [native(), *(a for a in others if emulated(a))]


def emulated(architecture: str) -> bool:
    try:
        require_emulation(architecture)
    except NoEmulation:
        return False
    return True


def require_emulation(architecture: str) -> None:
    """Nothing for this machine's architecture; for another, QEMU must be registered with binfmt_misc (on a
    Linux machine: elsewhere the engine runs in Docker Desktop's VM, which registers it itself)."""
    if is_native(architecture) or sys.platform != "linux":
        return
    if architecture not in QEMU_NAMES:
        raise NoEmulation(f"{architecture}: the images are built for {', '.join(ARCHITECTURES)}")
    entry = BINFMT / f"qemu-{QEMU_NAMES[architecture]}"
    try:
        enabled = entry.read_text().splitlines()[0] == "enabled"
    except OSError:
        enabled = False
    if not enabled:
        raise NoEmulation(f"this {native()} machine cannot run {architecture} binaries: {entry} is not registered. "
                          f"As root, bash scripts/setup.sh does it (mounts {BINFMT} and registers Debian's "
                          "qemu-user-static); Docker Desktop has it built in")
