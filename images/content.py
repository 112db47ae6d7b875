"""An image's own content, read from `docker save`: its layers and its config, the same figures on every image
store. `docker image inspect .Size` means the files' bytes on overlay2 but the compressed content on the
containerd store, and `docker history` counts disk blocks there; the layers themselves mean one thing everywhere.

`docker save` writes the layers as plain tars (the overlay2 store; Docker 20.10's legacy archive or, from 25,
an OCI layout) or as the compressed blobs the image was pulled or built with (the containerd store). Either way
each layer is read once, as a stream: its uncompressed tar is hashed (its diff ID, checked against the config),
counted, gzip'd as a push would and walked for its files' bytes.
"""

import hashlib
import io
import json
import posixpath
import subprocess
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from typing import IO

from .docker import docker_command, progress

GZIP_LEVEL = 6  # gzip's default, and what a push compresses with unless told otherwise
GZIP_MAGIC, ZSTD_MAGIC = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"
SMALL = 4 << 20  # members below this (configs, manifests, indexes, small layers) are kept whole until the end
CHUNK = 1 << 20


class ContentError(RuntimeError):
    """`docker save` wrote something this reader cannot account for; the message says what."""


@dataclass(frozen=True)
class Layer:
    diff_id: str  # sha256 of the uncompressed tar: the config's rootfs.diff_ids entry
    tar_bytes: int  # the uncompressed tar
    file_bytes: int  # its regular files' contents, a hard-linked file once
    gzip_bytes: int  # the tar gzip'd at GZIP_LEVEL: about what a registry stores and a pull moves


@dataclass(frozen=True)
class ImageContent:
    layers: list[Layer]
    config: dict

    @property
    def file_bytes(self) -> int:
        """The files' bytes over every layer: the image's uncompressed size. overlay2's `.Size` is the same
        figure, give or take its symlinks: it counts their targets' length in layers it unpacked itself (a pull,
        `docker import`) and not in layers BuildKit made (so none in micro; 4.5 KB in distroless, 17 KB in slim)."""
        return sum(layer.file_bytes for layer in self.layers)

    @property
    def gzip_bytes(self) -> int:
        return sum(layer.gzip_bytes for layer in self.layers)

    def steps(self) -> list[tuple[int, str]]:
        """(files' bytes, the instruction) for each step of the image's history, oldest first; a step that made
        no layer (ENV, CMD...) has 0 bytes, as `docker history` shows it."""
        layers, rows = iter(self.layers), []
        for step in self.config.get("history", []):
            made = None if step.get("empty_layer") else next(layers, None)
            rows.append((made.file_bytes if made else 0, step.get("created_by", "")))
        return rows


class Counted(io.RawIOBase):
    """A layer's uncompressed tar as it streams past: hashed, counted and gzip'd on the way to the reader."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.pending = chunks, b""
        self.sha256, self.size, self.packed = hashlib.sha256(), 0, 0
        self.gzip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        while not self.pending:
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.sha256.update(chunk)
            self.size += len(chunk)
            self.packed += len(self.gzip.compress(chunk))
            self.pending = chunk
        taken, self.pending = self.pending[:len(buffer)], self.pending[len(buffer):]
        buffer[:len(taken)] = taken
        return len(taken)

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def chunks_of(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


def uncompressed(chunks: Iterator[bytes], name: str) -> Iterator[bytes]:
    """A blob's chunks as a plain tar: gzip'd blobs inflated, plain ones as they are."""
    first = next(chunks, b"")
    if first.startswith(ZSTD_MAGIC):
        raise ContentError(f"{name} is a zstd-compressed layer, which this reader does not inflate; save an "
                           "image with gzip'd layers")
    if not first.startswith(GZIP_MAGIC):
        yield first
        yield from chunks
        return
    inflate = zlib.decompressobj(47)
    for chunk in chain([first], chunks):
        yield inflate.decompress(chunk)
    yield inflate.flush()


def layer_of(chunks: Iterator[bytes], name: str) -> Layer:
    """One layer's figures from its blob, read once."""
    stream = Counted(uncompressed(chunks, name))
    file_bytes = 0
    with tarfile.open(fileobj=io.BufferedReader(stream, CHUNK), mode="r|") as tar:
        for member in tar:
            if member.isreg():
                file_bytes += member.size
        stream.drain()  # the tar's end (tarfile stops at its first zero block): part of the diff ID
    return Layer(f"sha256:{stream.sha256.hexdigest()}", stream.size, file_bytes,
                 stream.packed + len(stream.gzip.flush()))


def read_saved(save: IO[bytes]) -> ImageContent:
    """The content of the one image a `docker save` stream holds."""
    small: dict[str, bytes] = {}
    layers: dict[str, Layer] = {}
    links: dict[str, str] = {}  # a layer the image holds twice is saved once, the other a link to it
    with tarfile.open(fileobj=save, mode="r|") as archive:
        for member in archive:
            if member.issym():
                links[member.name] = posixpath.normpath(posixpath.join(posixpath.dirname(member.name),
                                                                       member.linkname))
            if not member.isreg():
                continue
            data = archive.extractfile(member)
            if member.size < SMALL:
                small[member.name] = data.read()
            else:
                layers[member.name] = layer_of(chunks_of(data), member.name)
    manifest = json.loads(small.get("manifest.json", b"null")) or manifest_from_index(small)
    if len(manifest) != 1:
        raise ContentError(f"the saved archive holds {len(manifest)} images, not one")
    config = json.loads(small[manifest[0]["Config"]])
    paths = [links.get(path, path) for path in manifest[0]["Layers"]]
    found = [layers.get(path) or layer_of(iter([small[path]]), path) for path in paths]
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    if [layer.diff_id for layer in found] != diff_ids:
        raise ContentError("the saved layers do not hash to the config's diff IDs: the archive was not read as "
                           "it was written")
    return ImageContent(found, config)


def manifest_from_index(small: dict[str, bytes]) -> list[dict]:
    """An OCI layout without Docker's manifest.json: its one image manifest, in manifest.json's shape."""
    def blob(descriptor: dict) -> dict:
        return json.loads(small["blobs/" + descriptor["digest"].replace(":", "/", 1)])

    index = json.loads(small.get("index.json", b"{}"))
    entries = index.get("manifests", [])
    while len(entries) == 1 and "manifests" in (found := blob(entries[0])):  # an index inside the index
        entries = found["manifests"]
    manifests = [blob(entry) for entry in entries]
    return [{"Config": "blobs/" + m["config"]["digest"].replace(":", "/", 1),
             "Layers": ["blobs/" + layer["digest"].replace(":", "/", 1) for layer in m["layers"]]}
            for m in manifests]


def image_content(tag: str) -> ImageContent:
    """TAG's layers and config, from `docker save` (streamed; nothing is written to disk)."""
    command = [*docker_command(), "save", tag]
    progress("$ " + " ".join(command) + " | (each layer: sha256, bytes, files' bytes, gzip -6)")
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as save:
        try:
            content = read_saved(save.stdout)
        except tarfile.ReadError as why:
            save.kill()
            raise ContentError(f"`docker save {tag}` wrote no archive: "
                               f"{save.stderr.read().decode(errors='replace').strip() or why}") from None
        save.stdout.read()
        error = save.stderr.read().decode(errors="replace").strip()
    if save.returncode != 0:
        raise ContentError(f"`docker save {tag}` failed ({save.returncode}): {error}")
    return content
