"""An image's content read from `docker save` (images/content.py): the same figures from Docker's legacy
archive with plain layers (overlay2) and from an OCI layout with gzip'd blobs (the containerd image store), and
under Docker the figures of a real image against its exported files and the engine's own diff IDs."""

import gzip
import hashlib
import io
import json
import tarfile

import pytest
from conftest import require_image
from support import DOCKER_FILES, exported, image_tag, inspect_image

from images import content
from images.content import ContentError, image_content, read_saved

BIG = bytes(range(256)) * (content.SMALL // 256 + 4096)  # one file large enough to be streamed, not kept whole


def tar_of(entries: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in entries:
            tar.addfile(info, io.BytesIO(data[info.name]) if info.name in data else None)
    return buffer.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info


def made_layers() -> list[bytes]:
    """A layer of a big file, a symlink to it and a hard link to it, its end padded with more zeros than one
    read takes (they count in its diff ID too); then an empty layer."""
    first = tar_of([entry("usr/lib/big", size=len(BIG)), entry("usr/lib/big.so", tarfile.SYMTYPE, link="big"),
                    entry("usr/lib/big.1", tarfile.LNKTYPE, link="usr/lib/big"), entry("app/", tarfile.DIRTYPE)],
                   {"usr/lib/big": BIG})
    return [first + bytes(2 * content.CHUNK), tar_of([], {})]


def diff_id(layer: bytes) -> str:
    return "sha256:" + hashlib.sha256(layer).hexdigest()


def config_of(layers: list[bytes]) -> bytes:
    history = [{"created_by": "COPY big /usr/lib/"}, {"created_by": "ENV A=1", "empty_layer": True},
               {"created_by": "WORKDIR /app"}]
    return json.dumps({"rootfs": {"type": "layers", "diff_ids": [diff_id(layer) for layer in layers]},
                       "history": history, "config": {"Healthcheck": {"Test": ["NONE"]}}}).encode()


def archive(files: dict[str, bytes]) -> io.BytesIO:
    return io.BytesIO(tar_of([entry(name, size=len(data)) for name, data in files.items()], files))


def legacy_archive(layers: list[bytes], config: bytes) -> io.BytesIO:
    """What Docker 20.10 saves from overlay2: a folder a layer, each with a plain layer.tar; manifest.json last."""
    files = {"cfg.json": config} | {f"l{index}/layer.tar": layer for index, layer in enumerate(layers)}
    manifest = [{"Config": "cfg.json", "RepoTags": ["x:y"], "Layers": [f"l{i}/layer.tar" for i in range(len(layers))]}]
    return archive(files | {"manifest.json": json.dumps(manifest).encode()})


def oci_layout(layers: list[bytes], config: bytes) -> io.BytesIO:
    """What the containerd image store saves: gzip'd layer blobs, reached from index.json (no manifest.json)."""
    def described(data: bytes, media_type: str) -> tuple[dict, str, bytes]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return {"mediaType": media_type, "digest": digest, "size": len(data)}, "blobs/sha256/" + digest[7:], data

    blobs = [described(gzip.compress(layer), "application/vnd.oci.image.layer.v1.tar+gzip") for layer in layers]
    config_blob = described(config, "application/vnd.oci.image.config.v1+json")
    manifest = described(json.dumps({"schemaVersion": 2, "config": config_blob[0],
                                     "layers": [blob[0] for blob in blobs]}).encode(),
                         "application/vnd.oci.image.manifest.v1+json")
    index = {"schemaVersion": 2, "manifests": [manifest[0]]}
    files = {path: data for _, path, data in (*blobs, config_blob, manifest)}
    layout = b'{"imageLayoutVersion": "1.0.0"}'
    return archive({"oci-layout": layout, **files, "index.json": json.dumps(index).encode()})


def test_a_legacy_archive_and_an_oci_layout_of_the_same_image_give_the_same_figures():
    layers = made_layers()
    legacy = read_saved(legacy_archive(layers, config_of(layers)))
    oci = read_saved(oci_layout(layers, config_of(layers)))
    assert legacy.layers == oci.layers
    assert [layer.diff_id for layer in oci.layers] == [diff_id(layer) for layer in layers]
    assert [layer.tar_bytes for layer in oci.layers] == [len(layer) for layer in layers]
    assert oci.file_bytes == len(BIG)  # the symlink and the hard link hold no bytes of their own
    assert oci.gzip_bytes == sum(len(gzip.compress(layer, content.GZIP_LEVEL)) for layer in layers)


def test_a_step_that_made_no_layer_has_no_bytes_and_each_layer_meets_its_step():
    layers = made_layers()
    image = read_saved(legacy_archive(layers, config_of(layers)))
    assert image.steps() == [(len(BIG), "COPY big /usr/lib/"), (0, "ENV A=1"), (0, "WORKDIR /app")]


def test_layers_that_do_not_hash_to_the_configs_diff_ids_are_refused():
    layers = made_layers()
    with pytest.raises(ContentError, match="do not hash to the config's diff IDs"):
        read_saved(legacy_archive(layers, config_of(list(reversed(layers)))))


def test_a_layer_an_image_holds_twice_is_read_through_the_link_docker_save_writes_for_the_second():
    """Docker 20.10 saves a layer once; the second place the image holds it is a symlink to the first."""
    big, empty = made_layers()
    layers = [big, empty, empty]
    files = {"cfg.json": config_of(layers), "l0/layer.tar": big, "l1/layer.tar": empty}
    manifest = [{"Config": "cfg.json", "RepoTags": ["x:y"], "Layers": ["l0/layer.tar", "l1/layer.tar", "l2/layer.tar"]}]
    files["manifest.json"] = json.dumps(manifest).encode()
    saved = tar_of([*(entry(name, size=len(data)) for name, data in files.items() if name != "manifest.json"),
                    entry("l2/layer.tar", tarfile.SYMTYPE, link="../l1/layer.tar"),
                    entry("manifest.json", size=len(files["manifest.json"]))], files)
    image = read_saved(io.BytesIO(saved))
    assert [layer.diff_id for layer in image.layers] == [diff_id(layer) for layer in layers]


def test_a_zstd_layer_is_refused_with_a_clear_error():
    layers = made_layers()
    saved = legacy_archive([b"\x28\xb5\x2f\xfd" + bytes(600), layers[1]], config_of(layers))
    with pytest.raises(ContentError, match="zstd-compressed layer"):
        read_saved(saved)


@pytest.mark.docker
@pytest.mark.parametrize("variant", ["micro", "distroless"])
def test_an_images_size_is_the_bytes_of_its_files_and_its_layers_are_the_engines(engine, variant):
    tag = image_tag(require_image(variant))
    image = image_content(tag)
    assert [layer.diff_id for layer in image.layers] == inspect_image(tag, ".RootFS.Layers")
    with exported(tag) as tar:  # no file of these images is written twice, so the layers add up to the export
        files = sum(member.size for member in tar if member.isreg() and member.name not in DOCKER_FILES)
    assert image.file_bytes == files
