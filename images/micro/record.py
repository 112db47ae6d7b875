"""Run a module as `python -m` would and, when it ends, write down every file the process used.

Dockerfile.micro's trace stage runs the service through this (images/micro/trace.py drives it). It imports
nothing at start beyond what `python -m` itself loads (runpy is what -m runs), so what it records is what
the service uses, not what the recorder uses. Output, one tab-separated line per file:

    module   <name>   <file the module was loaded from>
    mapped   -        <file mapped into memory: the interpreter, the loader, every shared library>
    opened   -        <file opened from Python (io.open, os.open): data files>
    path     -        <a sys.path entry: getpath and the import system look for these directories>

Usage: python3 record.py OUTPUT FAIL_PATH MODULE [ARGUMENT...]. FAIL_PATH ("-" for none) is a request path for which
the app's dispatch raises, so the trace also walks the 500 answer and its logged traceback.
"""

import os
import sys

OPENED: list[str] = []


def remember_opens(event: str, args: tuple) -> None:
    if event == "open" and isinstance(args[0], str):
        OPENED.append(args[0])


def fail_on(path: str) -> None:
    """Make the app raise for one path: the only way to reach a 500 from outside. hello-api's dispatch raises
    (its own handler answers); an app APP_WSGI names is wrapped, so the transport answers, as it would."""
    if os.environ.get("APP_WSGI"):
        from service import application  # before the server imports load() from it

        load = application.load

        def failing_load(settings: object) -> object:
            app = load(settings)

            def failing_app(environ: dict, start_response: object) -> object:
                if environ.get("PATH_INFO") == path:
                    raise RuntimeError(f"deliberate failure for {path}, injected by the micro image's build trace")
                return app(environ, start_response)
            return failing_app

        application.load = failing_load
        return
    from service import app

    dispatch = app.dispatch

    def failing_dispatch(environ: dict, environment: str) -> object:
        if environ.get("PATH_INFO") == path:
            raise RuntimeError(f"deliberate failure for {path}, injected by the micro image's build trace")
        return dispatch(environ, environment)

    app.dispatch = failing_dispatch


def used_files() -> list[str]:
    lines = []
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.has_location and spec.origin:
            lines.append(f"module\t{name}\t{spec.origin}")
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith("/"):
                lines.append(f"mapped\t-\t{fields[5].rstrip()}")
    lines += [f"opened\t-\t{path}" for path in OPENED]
    lines += [f"path\t-\t{entry}" for entry in sys.path]
    return lines


def write_record(output: str, lines: list[str]) -> None:
    with open(output, "w") as record:
        record.write("\n".join(lines) + "\n")


def record_forked_children(output: str) -> None:
    """APP_WORKERS forks workers that leave with os._exit, past every finally: each writes its own record
    (OUTPUT with its pid before .tsv) as it goes."""
    real_exit = os._exit

    def exit_recording(code: int) -> None:
        write_record(output.removesuffix(".tsv") + f".{os.getpid()}.tsv", used_files())
        real_exit(code)

    os._exit = exit_recording


def main() -> None:
    output, failing_path, module, *arguments = sys.argv[1:]
    sys.addaudithook(remember_opens)
    record_forked_children(output)
    if failing_path != "-":
        fail_on(failing_path)
    import runpy
    from importlib.util import find_spec

    main_spec = find_spec(module)  # runpy takes the module it runs out of sys.modules again when it ends
    if main_spec.submodule_search_locations is not None:
        main_spec = find_spec(f"{module}.__main__")
    sys.argv = [module, *arguments]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        write_record(output, [*used_files(), f"module\t{main_spec.name}\t{main_spec.origin}"])


if __name__ == "__main__":
    main()
