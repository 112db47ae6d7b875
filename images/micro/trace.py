"""Derive the micro image's file set at build time: run the service through its paths, keep what it used.

Dockerfile.micro runs this in a stage built on the distroless base (the interpreter the image will run):

1. trace: the service and its health check run under record.py, which notes every module loaded, every
   file mapped (the interpreter, the loader, shared libraries: /proc/self/maps) and every file opened
   from Python. Each run drives a path: every endpoint and error answer, a 500 with its logged
   traceback, hostile requests, both stop signals with a connection open, the select and poll loops,
   IPv4, IPv6 and a specific address, --help, --version, an unknown argument, a bad setting, a busy port,
   the health check healthy, unhealthy and misconfigured;
2. close: every kept ELF file's DT_NEEDED libraries and program interpreter are added, found the way the
   dynamic loader finds them, until nothing new appears;
3. copy into ROOT: files as reached from /, every symlink on the way kept as a symlink (merged /usr,
   SONAME links); Python modules as bytecode only, compiled by this interpreter where their source was;
   the installed packages' metadata (version, licence); /etc/passwd and /etc/group (read by the C
   library, which no Python hook sees); a manifest of every file, its kind, size and why it is there;
4. verify: the service starts from ROOT alone (chroot, user 65532), answers /health, passes its own
   health check, stops cleanly on SIGTERM and rejects a bad setting with exit 2 and one line.

An app of the user's (APP_WSGI) runs through the same runs, its health path (APP_HEALTH_PATH) standing for
/health and its 500 raised by the app itself, and one run more: TRACE_COMMAND (its own tests) drives it, and
must pass again against ROOT in step 4. The manifest marks what only that run needed; the output lists what no
run used under /app (modules never imported, files never opened); TRACE_KEEP keeps files on purpose.

Any step that finds nothing, or a run that does not behave, stops the build with the reason.
Usage: python3 trace.py ROOT
"""

import glob
import importlib.metadata
import os
import py_compile
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

HERE = Path(__file__).resolve().parent
RECORDER = HERE / "record.py"
MANIFEST = "usr/share/hello-api/manifest.tsv"
FAIL_PATH = "/trace/fail"
NONROOT = 65532
READY_SECONDS = 20.0
NOT_KEPT = ("/proc/", "/dev/", "/sys/", "/tmp/", "/run/", f"{HERE}/")
# Read by the C library (NSS), which no Python audit hook sees: the user database for USER 65532.
C_LIBRARY_FILES = {"/etc/passwd": True, "/etc/group": True, "/etc/nsswitch.conf": False}  # path: required
# An app of the user's (APP_WSGI), traced by its own command: TRACE_COMMAND runs in TESTS (the build
# argument TRACE_TESTS's folder) against the traced server at BASE_URL; TRACE_KEEP lists files to keep on
# purpose (globs), which no run was seen to use.
APP_WSGI = os.environ.get("APP_WSGI", "")
HEALTH_PATH = os.environ.get("APP_HEALTH_PATH") or "/health"
TESTS = Path("/trace/tests")
COMMAND_RUN = "app-command"


def fail(message: str) -> NoReturn:
    raise SystemExit(f"micro trace: error: {message}")


def say(message: str) -> None:
    print(f"micro trace: {message}", flush=True)


# ---- 1. trace ---------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@dataclass
class Recorded:
    """A process run under record.py, its output in files (a pipe left unread could block the server)."""
    label: str
    process: subprocess.Popen
    work: Path

    def output(self) -> tuple[str, str]:
        return ((self.work / f"{self.label}.out").read_text(errors="replace"),
                (self.work / f"{self.label}.err").read_text(errors="replace"))

    def wait(self, expected: int, seconds: float = 20.0) -> str:
        """Wait for the exit code `expected`; returns stderr."""
        try:
            code = self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            fail(f"{self.label}: still running after {seconds:.0f}s; stderr: {self.output()[1][-800:]}")
        if code != expected:
            fail(f"{self.label}: exit code {code}, expected {expected}; stderr: {self.output()[1][-800:]}")
        return self.output()[1]


def start(label: str, module: str, env: dict[str, str], work: Path, failing_path: str = "-",
          arguments: tuple[str, ...] = ()) -> Recorded:
    command = [sys.executable, str(RECORDER), str(work / f"{label}.tsv"), failing_path, module, *arguments]
    with (work / f"{label}.out").open("wb") as out, (work / f"{label}.err").open("wb") as err:
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=err,
                                   stdin=subprocess.DEVNULL)
    return Recorded(label, process, work)


def exchange(port: int, request: bytes, host: str = "127.0.0.1") -> bytes:
    """Send raw bytes, read until the server closes (or 2 s of silence)."""
    answer = b""
    with socket.create_connection((host, port), timeout=2) as connection:
        connection.sendall(request)
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return answer


def get(path: str, method: str = "GET", headers: str = "", version: str = "1.1") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: trace\r\nConnection: close\r\n{headers}\r\n".encode()


# Every answer the service can give, and requests a hostile client sends; only the first and the
# injected failure are checked here (the tests check the rest), the others only need to be walked.
REQUESTS = [
    get("/health"),
    get(FAIL_PATH),
    get("/hello/J%C3%BCrgen"),
    get("/hello/World", method="HEAD"),
    get("/nope"),
    get("/health", method="DELETE"),
    get("/hello/%FF"),
    get("/hello/" + "x" * 101),
    get("/health", version="1.0"),
    get("/health", headers="".join(f"X-Big-{i}: {'x' * 4000}\r\n" for i in range(8))),
    get("/health", method="POST", headers=f"Content-Length: {128 * 1024}\r\n") + b"x" * 128 * 1024,
    get("/health", headers="Transfer-Encoding: chunked\r\n") + b"4\r\nabcd\r\n0\r\n\r\n",
    b"GET /health HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"NOT HTTP AT ALL\r\n\r\n",
    b"\x00\xff" * 512 + b"\r\n\r\n",
    b"".join(get(f"/hello/pipe{i}").replace(b"Connection: close\r\n", b"") for i in range(3)) + get("/health"),
]


def wait_ready(server: Recorded, port: int, host: str) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            fail(f"{server.label}: the service exited ({server.process.returncode}) before answering; "
                 f"stderr: {server.output()[1][-800:]}")
        try:
            if healthy(exchange(port, get(HEALTH_PATH), host)):
                return
        except OSError:
            pass
        time.sleep(0.05)
    fail(f"{server.label}: {HEALTH_PATH} did not answer 2xx within {READY_SECONDS:.0f}s")


def healthy(answer: bytes) -> bool:
    """A 2xx: hello-api answers its /health with 200, an app of the user's its APP_HEALTH_PATH with any 2xx."""
    return answer.startswith(b"HTTP/1.1 2")


@contextmanager
def idle_keep_alive(port: int, host: str) -> Iterator[None]:
    """A keep-alive connection left open after one answer, so the drain has a connection to close."""
    with socket.create_connection((host, port), timeout=5) as connection:
        connection.sendall(f"GET {HEALTH_PATH} HTTP/1.1\r\nHost: trace\r\n\r\n".encode())
        connection.recv(65536)
        yield


@dataclass(frozen=True)
class Serving:
    label: str
    env: dict[str, str]
    host: str = "127.0.0.1"  # where to reach it
    signals: tuple[int, ...] = (signal.SIGTERM,)
    hostile: bool = False


def serve(run: Serving, work: Path) -> None:
    """One server run: every request, the health check against it, a stop with a connection open."""
    port = free_port()
    server = start(run.label, "service", {**run.env, "APP_PORT": str(port)}, work,
                   FAIL_PATH if run.hostile else "-")
    try:
        wait_ready(server, port, run.host)
        for request in REQUESTS if run.hostile else REQUESTS[:1]:
            answer = exchange(port, request, run.host)
            if request == REQUESTS[1] and not answer.startswith(b"HTTP/1.1 500 "):
                fail(f"{run.label}: the injected failure did not give a 500: {answer[:200]!r}")
        start(f"{run.label}-healthcheck", "service.healthcheck", {"APP_PORT": str(port), **run.env}, work).wait(0)
        with idle_keep_alive(port, run.host):
            for signum in run.signals:
                server.process.send_signal(signum)
                time.sleep(0.1)
            stderr = server.wait(0)
    finally:
        if server.process.poll() is None:
            server.process.kill()
    if run.hostile and "Traceback" not in stderr:
        fail(f"{run.label}: the injected failure logged no traceback; stderr: {stderr[-800:]}")


def run_command(port: int, label: str) -> subprocess.CompletedProcess:
    """TRACE_COMMAND (split as a shell would, run without one: the base has none) in TESTS, against the
    server on `port` (BASE_URL), by this stage's interpreter: the client's own files are not traced."""
    command = shlex.split(os.environ["TRACE_COMMAND"])
    environment = {**os.environ, "BASE_URL": f"http://127.0.0.1:{port}"}
    try:
        return subprocess.run(command, cwd=TESTS, env=environment, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as failed:
        fail(f"{label}: TRACE_COMMAND={os.environ['TRACE_COMMAND']!r} could not run: {failed}")


def command_run(work: Path) -> None:
    """The app driven by its own command (its tests against the live server), the server recorded."""
    port = free_port()
    server = start(COMMAND_RUN, "service", {"APP_PORT": str(port)}, work)
    try:
        wait_ready(server, port, "127.0.0.1")
        result = run_command(port, COMMAND_RUN)
        if result.returncode != 0:
            fail(f"{COMMAND_RUN}: TRACE_COMMAND exited {result.returncode} against the traced server: "
                 f"{(result.stdout + result.stderr)[-1500:]}")
        say(f"{COMMAND_RUN}: TRACE_COMMAND passed: {(result.stdout + result.stderr).strip().splitlines()[-1:]}")
        server.process.send_signal(signal.SIGTERM)
        server.wait(0)
    finally:
        if server.process.poll() is None:
            server.process.kill()


def answers_without_serving(work: Path) -> None:
    """The service's other exits: --help, --version, an unknown argument (2), a bad setting (2), a busy
    port (1); the health check's failures (1)."""
    start("help", "service", {}, work, arguments=("--help",)).wait(0)
    start("version", "service", {}, work, arguments=("--version",)).wait(0)
    start("unknown-argument", "service", {}, work, arguments=("--bogus",)).wait(2)
    start("config-error", "service", {"APP_PORT": "not-a-port"}, work).wait(2)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        start("port-busy", "service", {"APP_HOST": "127.0.0.1", "APP_PORT": port}, work).wait(1)
    start("healthcheck-down", "service.healthcheck", {"APP_PORT": str(free_port())}, work).wait(1)
    start("healthcheck-config-error", "service.healthcheck", {"APP_PORT": "not-a-port"}, work).wait(1)


def trace(work: Path) -> None:
    runs = [Serving("serve", {"APP_ENV": "trace"}, hostile=True),
            Serving("serve-poll-sigint", {"APP_HOST": "127.0.0.1", "APP_CONNECTION_LIMIT": "2000",
                                          "APP_LOG_LEVEL": "DEBUG"}, signals=(signal.SIGINT,)),
            Serving("serve-quiet", {"APP_LOG_LEVEL": "WARNING", "APP_HOST": "0.0.0.0"}),
            Serving("serve-workers", {"APP_WORKERS": "2"}),  # the supervisor and its forked workers
            Serving("serve-workers-reuse-port", {"APP_WORKERS": "2", "APP_REUSE_PORT": "true"})]  # a socket each
    if ipv6_loopback():
        runs.append(Serving("serve-ipv6", {"APP_HOST": "::"}, host="::1"))
    else:
        say("no IPv6 loopback in the build sandbox: the APP_HOST=:: run is skipped")
    for run in runs:
        say(f"run: {run.label}")
        serve(run, work)
    say("runs: --help, --version, an unknown argument, a bad setting, a busy port; health check down and "
        "misconfigured")
    answers_without_serving(work)
    if APP_WSGI:
        say(f"run: {COMMAND_RUN}: {os.environ['TRACE_COMMAND']}")
        command_run(work)


# ---- 2. what the runs used, and the ELF closure -----------------------------------------------------

@dataclass
class Kept:
    kind: str
    reasons: set[str] = field(default_factory=set)


def run_label(record: Path) -> str:
    """The run a record belongs to; a forked worker's (RUN.PID.tsv) is named without its pid, which differs
    from build to build and would make the manifest, and so the image's layer, differ too."""
    run, _, pid = record.stem.rpartition(".")
    return f"{run} (a forked worker)" if run and pid.isdigit() else record.stem


def read_records(work: Path) -> list[tuple[str, str, str, str]]:
    """(run label, what, name, path) for every line every recorded process wrote."""
    rows = []
    for record in sorted(work.glob("*.tsv")):
        for line in record.read_text().splitlines():
            what, name, path = line.split("\t", 2)
            rows.append((run_label(record), what, name, path))
    if not rows:
        fail("the trace recorded nothing: record.py wrote no file")
    return rows


def worth_keeping(path: str) -> bool:
    return path.startswith("/") and not path.startswith(NOT_KEPT) and "/__pycache__/" not in path


def mapped_kind(path: str, interpreter: str) -> str:
    """The interpreter, a shared library (ELF), or a data file the C library maps (locale, gconv cache)."""
    if path == interpreter:
        return "interpreter"
    with open(path, "rb") as file:
        return "shared library" if file.read(4) == b"\x7fELF" else "data file"


def kept_from_records(rows: list[tuple[str, str, str, str]]) -> dict[str, Kept]:
    kept: dict[str, Kept] = {}
    interpreter = os.path.realpath(sys.executable)

    def add(path: str, kind: str, reason: str) -> None:
        kept.setdefault(path, Kept(kind)).reasons.add(reason)

    module_runs: dict[str, set[str]] = {}

    for label, what, name, path in rows:
        if not worth_keeping(path):
            continue
        if what == "module" and path.endswith(".py"):
            add(path, "module", f"module {name}")
            module_runs.setdefault(path, set()).add(label)
        elif what == "module" and path.endswith(".so"):
            add(path, "shared library", f"extension module {name}")
        elif what == "mapped" and os.path.isfile(path):
            add(path, mapped_kind(path, interpreter), f"mapped by run {label}")
        elif what == "opened" and os.path.isfile(path) and not path.endswith(".py"):
            add(path, "data file", f"opened by run {label}")
        elif what == "path" and os.path.isdir(path):
            add(path, "directory", "on sys.path")
    for path, runs in module_runs.items():  # what only the app's own command reached: the trace needed it
        if all(run.startswith(COMMAND_RUN) for run in runs):
            add(path, "module", f"loaded only in run {COMMAND_RUN}")
    return kept


PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB = 0, 1, 5


def c_string(data: bytes, offset: int) -> str:
    return data[offset:data.index(b"\0", offset)].decode()


def elf_dependencies(path: str) -> list[str]:
    """A 64-bit little-endian ELF file's program interpreter (absolute) and DT_NEEDED names; [] otherwise."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4:6] != b"\x02\x01":
        return []
    header_offset, = struct.unpack_from("<Q", data, 0x20)
    entry_size, count = struct.unpack_from("<HH", data, 0x36)
    segments = [struct.unpack_from("<IIQQQQQQ", data, header_offset + i * entry_size) for i in range(count)]
    found, dynamic = [], []
    for kind, _, offset, _, _, size, _, _ in segments:
        if kind == PT_INTERP:
            found.append(c_string(data, offset))
        elif kind == PT_DYNAMIC:
            entries = (struct.unpack_from("<qQ", data, offset + i) for i in range(0, size, 16))
            dynamic = [(tag, value) for tag, value in entries if tag != DT_NULL]
    strings = next((value for tag, value in dynamic if tag == DT_STRTAB), None)
    if strings is None:
        return found
    base = next(offset + strings - address for kind, _, offset, address, _, size, _, _ in segments
                if kind == PT_LOAD and address <= strings < address + size)
    return found + [c_string(data, base + value) for tag, value in dynamic if tag == DT_NEEDED]


def library_directories() -> list[str]:
    """Where the dynamic loader looks when there is no ld.so.cache: the multiarch directories, then /lib."""
    triplet = sysconfig.get_config_var("MULTIARCH") or ""
    candidates = [f"/usr/lib/{triplet}", f"/lib/{triplet}", "/usr/lib", "/lib"] if triplet else ["/usr/lib", "/lib"]
    return [d for d in candidates if os.path.isdir(d)]


def resolve_library(name: str, directories: list[str]) -> str:
    if name.startswith("/"):
        return name
    for directory in directories:
        if os.path.exists(os.path.join(directory, name)):
            return os.path.join(directory, name)
    fail(f"shared library {name} is needed but not found in {directories}")


def close_over_elf(kept: dict[str, Kept]) -> None:
    """Add every library a kept ELF file needs, and what those need, until nothing new appears."""
    directories = library_directories()
    pending = [p for p, k in kept.items() if k.kind in ("interpreter", "shared library")]
    while pending:
        path = pending.pop()
        for name in elf_dependencies(path):
            library = resolve_library(name, directories)
            if library not in kept:
                kept[library] = Kept("shared library")
                pending.append(library)
            kept[library].reasons.add(f"needed by {os.path.basename(path)}")


def add_fixed_files(kept: dict[str, Kept]) -> None:
    """What no trace sees: C-library configuration, getpath's landmark, the names the base gives python."""
    for path, required in C_LIBRARY_FILES.items():
        if os.path.isfile(path):
            kept[path] = Kept("configuration", {"read by the C library (user and host look-ups)"})
        elif required:
            fail(f"{path} is missing from the base image")
    if not any(line.split(":")[2] == str(NONROOT) for line in Path("/etc/passwd").read_text().splitlines()):
        fail(f"the base's /etc/passwd has no user {NONROOT} (nonroot)")
    # Python finds sys.prefix by looking for lib/python3.X/os.py or os.pyc (Modules/getpath.py); os itself
    # is frozen into the interpreter, so no trace loads the file.
    kept.setdefault(os.__file__, Kept("module")).reasons.add("getpath's landmark for sys.prefix")
    interpreter = os.path.realpath(sys.executable)
    for name in Path(interpreter).parent.iterdir():
        if name.is_symlink() and os.path.realpath(name) == interpreter:
            kept[str(name)] = Kept("link", {f"a name the base gives {os.path.basename(interpreter)}"})


def add_package_metadata(kept: dict[str, Kept], rows: list[tuple[str, str, str, str]]) -> None:
    """The *.dist-info of every installed distribution a loaded module came from: its version, and the
    licence that has to travel with it."""
    loaded = {name.split(".")[0] for _, what, name, _ in rows if what == "module"}
    providers = importlib.metadata.packages_distributions()
    for distribution in sorted({d for name in loaded for d in providers.get(name, [])}):
        for file in importlib.metadata.distribution(distribution).files or []:
            if file.parts[0].endswith(".dist-info") and (path := str(file.locate())) and os.path.isfile(path):
                kept[os.path.realpath(path)] = Kept("metadata", {f"version and licence of {distribution}"})


def kept_set(work: Path) -> dict[str, Kept]:
    rows = read_records(work)
    kept = kept_from_records(rows)
    kinds = {k.kind for k in kept.values()}
    if not {"interpreter", "module", "shared library"} <= kinds:
        fail(f"the trace found too little (kinds: {sorted(kinds)}): expected the interpreter, modules, libraries")
    for package in ("service", "waitress"):
        if not any(f"module {package}" in r for k in kept.values() for r in k.reasons):
            fail(f"the trace never saw the {package} package loaded")
    add_kept_on_purpose(kept)
    close_over_elf(kept)
    add_fixed_files(kept)
    add_package_metadata(kept, rows)
    return kept


def add_kept_on_purpose(kept: dict[str, Kept]) -> None:
    """TRACE_KEEP's files (globs): what no run reached but the app may need (a module imported on a path the
    command does not drive, a data file read only sometimes)."""
    for pattern in os.environ.get("TRACE_KEEP", "").split():
        files = [path for path in sorted(glob.glob(pattern, recursive=True)) if os.path.isfile(path)]
        if not files:
            fail(f"TRACE_KEEP names {pattern}, which matches no file here: give absolute paths or globs, "
                 "/app/deps/PACKAGE/FILE")
        for path in files:
            kind = "module" if path.endswith(".py") else "data file"
            kept.setdefault(os.path.realpath(path), Kept(kind)).reasons.add("kept on purpose (TRACE_KEEP)")


def report_unseen(kept: dict[str, Kept]) -> None:
    """What the trace cannot see, in the build's output: under /app (the app and its packages, hello-api's
    service aside), the modules no run imported and the other files no run opened."""
    never_imported, never_opened = [], []
    for top in sorted(Path("/app").iterdir()):
        if not top.is_dir() or top.name == "service":
            continue
        for path in sorted(top.rglob("*")):
            if (not path.is_file() or "__pycache__" in path.parts or str(path) in kept
                    or any(part.endswith(".dist-info") for part in path.parts)):
                continue
            (never_imported if path.suffix in (".py", ".so") else never_opened).append(str(path))
    say(f"not seen by any run, so not kept: {len(never_imported)} module file(s) never imported and "
        f"{len(never_opened)} other file(s) never opened under /app; keep any on purpose with "
        "--build-arg TRACE_KEEP='PATH ...' (globs)")
    for label, paths in (("never imported", never_imported), ("never opened", never_opened)):
        for path in paths[:12]:
            say(f"  {label}: {path}")
        if len(paths) > 12:
            say(f"  ... and {len(paths) - 12} more {label}")


# ---- 3. copy into the root, write the manifest ------------------------------------------------------

def keep(path: str, root: Path) -> list[str]:
    """Copy PATH into ROOT as reached from /, each symlink on the way kept as a symlink. Returns the
    paths created, the real file last."""
    current, parts = Path("/"), Path(path).parts[1:]
    for index, part in enumerate(parts):
        candidate = current / part
        if candidate.is_symlink():
            link, target = root / candidate.relative_to("/"), os.readlink(candidate)
            if not link.is_symlink():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(target)
            rest = os.path.normpath(os.path.join(candidate.parent, target, *parts[index + 1:]))
            return [str(candidate), *keep(rest, root)]
        current = candidate
    destination = root / current.relative_to("/")
    if current.is_dir():
        destination.mkdir(parents=True, exist_ok=True)
    elif not destination.exists():
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(current, destination)
    return [str(current)]


def compile_module(source: str, root: Path) -> str:
    """Bytecode only, where the source was (a sourceless import), compiled by the image's own interpreter.
    unchecked-hash: no source time stamp inside, so the same sources give the same bytes."""
    keep(os.path.dirname(source), root)
    target = str(Path(source).with_suffix(".pyc"))
    py_compile.compile(source, cfile=str(root / target.lstrip("/")), dfile=source, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    return target


def copy_into(kept: dict[str, Kept], root: Path) -> dict[str, Kept]:
    """Copy every kept path; returns the image's paths with their kind and reasons."""
    image: dict[str, Kept] = {}
    for path, entry in sorted(kept.items(), key=lambda item: (item[1].kind == "link", item[0])):
        if entry.kind == "module":
            image[compile_module(path, root)] = entry
            continue
        created = keep(path, root)
        for link in created[:-1]:
            image.setdefault(link, Kept("link")).reasons.add(f"on the way to {created[-1]}")
        if entry.kind == "link":  # a name for a file kept for its own reasons (sorted last, so already there)
            image[created[0]].reasons.update(entry.reasons)
        else:
            image.setdefault(created[-1], Kept(entry.kind)).reasons.update(entry.reasons)
    return image


def write_manifest(image: dict[str, Kept], root: Path) -> None:
    lines = ["# hello-api micro image: every file kept, and why (images/micro/trace.py, at build time).",
             "# path\tkind\tbytes\twhy"]
    for path, entry in sorted(image.items()):
        where = root / path.lstrip("/")
        if entry.kind == "directory" or (where.is_dir() and not where.is_symlink()):
            continue
        size = 0 if where.is_symlink() else where.stat().st_size
        lines.append(f"{path}\t{entry.kind}\t{size}\t{'; '.join(sorted(entry.reasons))}")
    manifest = root / MANIFEST
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("\n".join(lines) + "\n")
    totals: dict[str, list[int]] = {}
    for line in lines[2:]:
        _, kind, size, _ = line.split("\t")
        totals.setdefault(kind, [0, 0])
        totals[kind][0] += 1
        totals[kind][1] += int(size)
    for kind, (count, size) in sorted(totals.items()):
        say(f"kept {count:4d} {kind} file(s), {size / 1e6:.2f} MB")


# ---- 4. verify: the service from the kept files alone -----------------------------------------------

def jailed(root: Path) -> Callable[[], None]:
    def enter() -> None:
        os.chroot(root)
        os.chdir("/")
        os.setgroups([])
        os.setgid(NONROOT)
        os.setuid(NONROOT)
    return enter


def run_jailed(root: Path, module: str, env: dict[str, str], **options: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module], env={**os.environ, **env}, preexec_fn=jailed(root),
                            stdin=subprocess.DEVNULL, **options)


def verify(root: Path) -> None:
    port = free_port()
    server = run_jailed(root, "service", {"APP_PORT": str(port)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                        text=True)
    try:
        deadline = time.monotonic() + READY_SECONDS
        while not exchange_ok(port):
            if server.poll() is not None or time.monotonic() > deadline:
                fail(f"the service does not serve from the kept files alone: {server.communicate()[1][-800:]}")
            time.sleep(0.05)
        if run_jailed(root, "service.healthcheck", {"APP_PORT": str(port)}).wait(timeout=20) != 0:
            fail("the health check fails from the kept files alone")
        if APP_WSGI and (result := run_command(port, "verify")).returncode != 0:
            fail(f"TRACE_COMMAND fails against the kept files alone (exit {result.returncode}): "
                 f"{(result.stdout + result.stderr)[-1500:]}")
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=20)
        if server.returncode != 0 or "Stopped cleanly" not in stderr:
            fail(f"from the kept files alone, SIGTERM gave exit {server.returncode}: {stderr[-800:]}")
    finally:
        if server.poll() is None:
            server.kill()
    bad = run_jailed(root, "service", {"APP_PORT": "not-a-port"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                     text=True)
    out, err = bad.communicate(timeout=20)
    if bad.returncode != 2 or out or len(err.splitlines()) != 1:
        fail(f"from the kept files alone, a bad setting gave exit {bad.returncode} and {err!r}")
    say("verified: from the kept files alone (chroot, user 65532) it serves, passes its health check"
        f"{', passes TRACE_COMMAND' if APP_WSGI else ''}, stops cleanly on SIGTERM and exits 2 with one line on a "
        "bad setting")


def exchange_ok(port: int) -> bool:
    try:
        return healthy(exchange(port, get(HEALTH_PATH)))
    except OSError:
        return False


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        fail("usage: python3 trace.py ROOT")
    if APP_WSGI and not os.environ.get("TRACE_COMMAND"):
        fail(f"APP_WSGI={APP_WSGI}: give the command that drives the app (--build-arg TRACE_COMMAND=..., with its "
             "tests in TRACE_TESTS): the trace keeps only what some run used, and the server's own runs reach "
             f"no more of the app than {HEALTH_PATH}")
    root = Path(argv[0])
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="micro-trace-") as work:
        trace(Path(work))
        kept = kept_set(Path(work))
    image = copy_into(kept, root)
    write_manifest(image, root)
    if APP_WSGI:
        report_unseen(kept)
    verify(root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
