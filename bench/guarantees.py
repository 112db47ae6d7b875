"""What the project guarantees, as opposed to what it aims for: a run that breaks one of these fails.

Speed and size targets (the report's Targets table) are reported, met or missed, and never fail a run:
they depend on the machine. These do not: a lost request, a container that has to be killed, a socket
error or a non-2xx answer under steady load, a client locked out by hostile ones.
"""

from . import overhead
from .images import PROJECT_IMAGES


def study_failures(results: dict) -> list[str]:
    """From results.json: every project image stopped by itself (exit 0) in every run, and the service
    served at least overhead.FLOOR of what plain waitress served beside it."""
    problems = overhead.failures(results.get("hardening_cost"))
    for name, variant in results.get("variants", {}).items():
        if name not in PROJECT_IMAGES:
            continue
        codes = variant.get("stop", {}).get("exit_codes", [])
        if not codes or any(codes):
            problems.append(f"{name}: docker stop left exit codes {codes}; every one must be 0 (137: it was killed)")
    return problems


def reliability_failures(results: dict) -> list[str]:
    """From reliability.json: no lost request, no killed container, no error under the soak, no lockout."""
    problems = []
    for name, checks in results.get("images", {}).items():
        soak, stop = checks["soak"], checks["stop_under_load"]
        if soak["socket_errors"] or soak["non_2xx"]:
            problems.append(f"{name}: the soak saw {soak['socket_errors']} socket error(s) and {soak['non_2xx']} "
                            "non-2xx answer(s); both must be 0")
        if stop["lost"] != 0:
            problems.append(f"{name}: stopping under load, the server answered {stop['answered_by_server']} "
                            f"requests but the client received {stop['received_by_client']}: "
                            f"{stop['lost']} lost")
        if stop["exit_code"] != 0:
            problems.append(f"{name}: stopping under load ended with exit code {stop['exit_code']}, not 0")
        lockout = checks.get("lockout")
        if lockout is not None and lockout["fresh_clients_served"] != lockout["fresh_clients"]:
            problems.append(f"{name}: with {lockout['silent']} silent and {lockout['dripping']} dripping sockets "
                            f"open, {lockout['fresh_clients'] - lockout['fresh_clients_served']} of "
                            f"{lockout['fresh_clients']} fresh clients were not served")
    return problems
