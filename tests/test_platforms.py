"""Building for another architecture, without Docker: the tags, the build options, `--platform`, the check
that QEMU runs the architecture's binaries, and the bases' top-level layout taken from Debian's own."""

import argparse
import os

import pytest

from images import bases, platforms
from images.cli import architectures


@pytest.fixture
def on_amd64(monkeypatch):
    monkeypatch.setattr(platforms, "native", lambda: "amd64")


def test_an_image_for_this_machine_keeps_its_tag_and_another_carries_its_architecture(on_amd64):
    assert platforms.tagged("hello-api:micro", "amd64") == "hello-api:micro"
    assert platforms.tagged("hello-api:micro", "arm64") == "hello-api:micro-arm64"
    assert bases.slim_base("arm64") == "hello-api-base/python:3.13-slim-trixie-arm64"
    assert platforms.platform_option("amd64") == [] and platforms.platform_option("arm64") == ["--platform",
                                                                                                "linux/arm64"]


def test_platform_names_one_or_both_architectures_and_refuses_others(on_amd64):
    assert architectures("linux/arm64") == ["arm64"]
    assert architectures("linux/amd64,arm64,linux/amd64") == ["amd64", "arm64"]
    for wrong in ("linux/s390x", "", "windows/amd64"):
        with pytest.raises(argparse.ArgumentTypeError, match="name linux/amd64, linux/arm64 or both"):
            architectures(wrong)


def binfmt(folder, entries: dict[str, str]):
    for name, text in entries.items():
        (folder / name).write_text(text)
    return folder


def test_another_architecture_needs_qemu_registered_and_all_leaves_it_out_otherwise(on_amd64, monkeypatch, tmp_path):
    monkeypatch.setattr(platforms, "BINFMT", binfmt(tmp_path, {}))
    platforms.require_emulation("amd64")  # this machine's: nothing needed
    with pytest.raises(platforms.NoEmulation, match="this amd64 machine cannot run arm64 binaries"):
        platforms.require_emulation("arm64")
    assert platforms.runnable() == ["amd64"]
    binfmt(tmp_path, {"qemu-aarch64": "disabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n"})
    assert platforms.runnable() == ["amd64"]  # registered, but switched off
    binfmt(tmp_path, {"qemu-aarch64": "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n"})
    assert platforms.runnable() == ["amd64", "arm64"]


@pytest.mark.parametrize(("links", "folders"), [
    ({"bin": "usr/bin", "lib": "usr/lib", "lib64": "usr/lib64", "sbin": "usr/sbin"}, {"usr/lib64"}),  # amd64
    ({"bin": "usr/bin", "lib": "usr/lib", "sbin": "usr/sbin"}, set()),  # arm64: no /lib64
], ids=["amd64", "arm64"])
def test_the_distroless_root_has_the_top_level_links_of_debian_for_its_architecture(tmp_path, links, folders):
    layout, root = tmp_path / "debian", tmp_path / "distroless"
    (layout / "usr").mkdir(parents=True)
    (layout / "etc").mkdir()
    for name, target in links.items():
        (layout / name).symlink_to(target)
    root.mkdir()
    bases.link_like(root, layout)
    assert {entry.name: os.readlink(entry) for entry in root.iterdir() if entry.is_symlink()} == links
    assert (root / "usr/lib64").is_dir() == bool(folders) and not (root / "etc").exists()
