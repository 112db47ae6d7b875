"""The rarely taken paths, in every image and above all in `micro`, which holds only the files a build-time
trace saw the service use: a path the trace missed fails here, not in production. Then what `micro` must
not hold, its manifest, and the tracer's own logic (no Docker needed for that part).
"""

import os
import signal
import sys
import threading
import time
import uuid
from contextlib import contextmanager

import pytest
import requests
from conftest import EMULATED, ROOT, emulated_params, on_every_platform, require_image, wait_for_health
from support import DOCKER_FILES, docker, exported, free_port, image_tag

from images.content import image_content
from images.micro import trace
from images.sbom import SBOM_PATH

MANIFEST = "usr/share/hello-api/manifest.tsv"
MICRO_MAX_BYTES = 15_000_000
DOCKER_OWN_FILES = {f"/{name}" for name in DOCKER_FILES}  # docker create


@contextmanager
def serving(variant: str, module: str, env: dict[str, str] | None = None):
    """The image running `python3 -m MODULE`, MODULE a file from tests/ mounted beside the service."""
    name, port = f"hello-api-test-{uuid.uuid4().hex[:10]}", free_port()
    options = [f"-e{key}={value}" for key, value in (env or {}).items()]
    docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:5000", *options,
           "-v", f"{ROOT / 'tests' / module}.py:/app/{module}.py:ro", "--entrypoint", "python3",
           image_tag(variant), "-m", module)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, seconds=30)
        yield name, url
    finally:
        docker("rm", "-f", name, check=False)


@pytest.mark.docker
@on_every_platform
def test_an_exception_in_the_app_answers_500_and_logs_the_traceback(image):
    with serving(image, "hooked_service", env={"TEST_SERVICE_HOOKS": "failing_path"}) as (name, url):
        answer = requests.get(f"{url}/raise", timeout=5)
        assert requests.get(f"{url}/health", timeout=5).status_code == 200
        logs = docker("logs", name)
    assert answer.status_code == 500
    assert answer.json()["error"] == "internal_error"
    assert "Traceback" not in answer.text and "deliberate" not in answer.text
    assert "Unhandled error answering GET '/raise'" in logs.stderr
    assert "Traceback (most recent call last):" in logs.stderr
    assert "RuntimeError: deliberate failure for the 500 test" in logs.stderr
    # Source lines for the frames whose source is there (the mounted module): micro ships no .py files,
    # but linecache and tokenize are kept because the build's trace logged a traceback too.
    assert 'raise RuntimeError("deliberate failure for the 500 test")' in logs.stderr
    assert " GET /raise 500 " in logs.stdout


@pytest.mark.docker
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@on_every_platform
def test_a_stop_signal_lets_the_request_in_flight_finish_then_exits_0(image, signum):
    with serving(image, "hooked_service", env={"TEST_SERVICE_HOOKS": "slow", "SLOW_SECONDS": "3"}) as (name, url):
        answers = []
        client = threading.Thread(target=lambda: answers.append(requests.get(f"{url}/slow", timeout=20)))
        client.start()
        time.sleep(1.0)  # the request is in; its answer is 2 s away
        docker("kill", "--signal", signum.name, name)
        client.join(timeout=25)
        exit_code = docker("wait", name, timeout=30).stdout.strip()
        logs = docker("logs", name)
    assert [a.status_code for a in answers] == [200]
    assert answers[0].json() == {"slow": "done"}
    assert exit_code == "0"
    assert "Stopped cleanly" in logs.stderr
    assert " GET /slow 200 " in logs.stdout


def exported_files(tag: str) -> tuple[dict[str, int], set[str], str]:
    """(regular files with their sizes, every name, the manifest's text) of an image."""
    files, names, manifest = {}, set(), ""
    with exported(tag) as tar:
        for member in tar:
            name = "/" + member.name.removeprefix("./").lstrip("/")
            names.add(name)
            if member.isfile():
                files[name] = member.size
                if name == f"/{MANIFEST}":
                    manifest = tar.extractfile(member).read().decode()
    return files, names, manifest


MICROS = ["micro", *(name for name in EMULATED if name.startswith("micro-"))]  # on every platform


@pytest.fixture(scope="module", params=emulated_params(MICROS))
def micro_files(request, engine) -> tuple[dict[str, int], set[str], str]:
    return exported_files(image_tag(require_image(request.param)))


@pytest.mark.docker
def test_micro_has_no_shell_no_pip_and_no_package_database(micro_files):
    _, names, _ = micro_files
    tools = ("sh", "bash", "dash", "busybox", "pip", "pip3", "apt", "apt-get", "dpkg", "ldd")
    assert not [n for n in names if n.rsplit("/", 1)[-1] in tools]
    assert not [n for n in names if n.startswith(("/var/lib/dpkg", "/var/lib/apt", "/usr/share/doc"))
                and n not in (f"/{SBOM_PATH}", "/usr/share/doc", "/usr/share/doc/hello-api")]  # its SBOM only
    assert not [n for n in names if "/pip/" in n or "-packages/" in n]


@pytest.mark.docker
def test_the_micro_manifest_accounts_for_every_file_with_its_kind_size_and_reason(micro_files):
    files, _, manifest = micro_files
    rows = [line.split("\t") for line in manifest.splitlines() if not line.startswith("#")]
    listed = {path: (kind, int(size), why) for path, kind, size, why in rows}
    regular = {path for path, (kind, _, _) in listed.items() if kind != "link"}
    assert regular == set(files) - DOCKER_OWN_FILES - {f"/{MANIFEST}", f"/{SBOM_PATH}"}  # written after it
    assert all(why for _, _, why in listed.values())
    assert all(files[path] == size for path, (_, size, _) in listed.items() if path in regular)
    assert {"interpreter", "shared library", "module", "configuration"} <= {k for k, _, _ in listed.values()}
    assert listed["/app/service/server.pyc"][0] == "module"


@pytest.mark.docker
def test_micro_needs_no_tls_libraries_and_no_sources(micro_files):
    files, _, _ = micro_files
    assert not [f for f in files if "libssl" in f or "libcrypto" in f or "/_ssl." in f]  # the health check
    assert not [f for f in files if f.endswith(".py")]  # bytecode only


@pytest.mark.docker
@pytest.mark.parametrize("micro", emulated_params(MICROS))
def test_micro_is_at_most_15_mb(engine, micro):
    size = image_content(image_tag(require_image(micro))).file_bytes  # its files' bytes, on every image store
    assert size <= MICRO_MAX_BYTES, f"{size / 1e6:.1f} MB"


# ---- the tracer's logic, without Docker ------------------------------------------------------------

def test_the_elf_reader_finds_the_interpreter_and_the_needed_libraries():
    dependencies = trace.elf_dependencies(os.path.realpath(sys.executable))
    assert dependencies[0].startswith("/") and "ld-linux" in dependencies[0]
    assert "libc.so.6" in dependencies[1:]
    assert trace.elf_dependencies(__file__) == []


def test_keep_copies_a_file_with_every_symlink_on_the_way(tmp_path):
    source, root = tmp_path / "source", tmp_path / "root"
    (source / "usr/lib").mkdir(parents=True)
    (source / "usr/lib/libx.so.1.2").write_bytes(b"\x7fELF")
    (source / "usr/lib/libx.so.1").symlink_to("libx.so.1.2")
    (source / "lib").symlink_to("usr/lib")
    created = trace.keep(str(source / "lib/libx.so.1"), root)
    inside = root / source.relative_to("/")
    assert os.readlink(inside / "lib") == "usr/lib"
    assert os.readlink(inside / "usr/lib/libx.so.1") == "libx.so.1.2"
    assert (inside / "usr/lib/libx.so.1.2").read_bytes() == b"\x7fELF"
    assert created[-1] == str(source / "usr/lib/libx.so.1.2")


def test_the_trace_stops_the_build_when_it_recorded_nothing_or_missed_the_service(tmp_path):
    with pytest.raises(SystemExit, match="recorded nothing"):
        trace.kept_set(tmp_path)
    libc = trace.resolve_library("libc.so.6", trace.library_directories())
    (tmp_path / "serve.tsv").write_text(f"mapped\t-\t{os.path.realpath(sys.executable)}\nmapped\t-\t{libc}\n"
                                        f"module\tjson\t{os.path.dirname(os.__file__)}/json/__init__.py\n")
    with pytest.raises(SystemExit, match="never saw the service package"):
        trace.kept_set(tmp_path)


def test_a_forked_workers_record_is_named_for_its_run_not_its_pid(tmp_path):
    """Pids differ from build to build: in the manifest they would make micro's layer differ too."""
    libc = trace.resolve_library("libc.so.6", trace.library_directories())
    (tmp_path / "serve-workers.37.tsv").write_text(f"mapped\t-\t{libc}\n")
    (tmp_path / "serve-workers.tsv").write_text(f"mapped\t-\t{libc}\n")
    assert {label for label, *_ in trace.read_records(tmp_path)} == {"serve-workers",
                                                                    "serve-workers (a forked worker)"}
