"""The hostile crowd (bench/crowd.py): its plan is the seed's, and the service holds against it.

Against `python -m service` on loopback with the default settings and with APP_CONNECTION_LIMIT=50, one and two
workers, each with a fixed seed, then once with a seed drawn now (printed in the failure, with the command that
replays it), and once against an image straight at the container's address. Each run is a few seconds of crowd:
the assertions count what happened (the server's exit, its log, its processes, its descriptors, the probes
answered within the service's 1 s bound), never how fast.
"""

import pytest
from conftest import require_image
from support import image_tag

from bench import crowd
from bench.studies import reliability

SECONDS = 5.0
CONNECTIONS = 2400  # half arrive in the first second: past the default limit of 1000
LIMIT = reliability.CROWD_LIMIT
LOCAL_RUNS = {  # id: (seed, APP_WORKERS, APP_CONNECTION_LIMIT or the default)
    "default-1-worker": (20261203, 1, None),
    "limit-50-1-worker": (24, 1, LIMIT),
    "default-2-workers": (5610, 2, None),
    "limit-50-2-workers": (4, 2, LIMIT),
}
RANDOM_SEED = crowd.new_seed()


def assert_held(outcome: dict, settings: dict[str, str], image: str | None = None) -> None:
    replay = crowd.replay_command(outcome["seed"], CONNECTIONS, SECONDS, settings, image)
    assert outcome["held"], f"seed {outcome['seed']} did not hold: {outcome['reasons']}; replay: {replay}"
    limit = int(settings.get("APP_CONNECTION_LIMIT", 1000))
    assert outcome["crowd"]["peak_open"] > limit, f"the crowd never passed the limit ({limit}); replay: {replay}"
    assert all(tally["opened"] for tally in outcome["crowd"]["by_behaviour"].values()), outcome["crowd"]


def stand_local(seed: int, workers: int, limit: int | None) -> None:
    settings = reliability.crowd_settings(workers, limit)
    with crowd.local_service(settings) as served:
        outcome = crowd.stand(served, seed, CONNECTIONS, SECONDS)
    assert_held(outcome, settings)


@pytest.mark.parametrize("seed, workers, limit", LOCAL_RUNS.values(), ids=LOCAL_RUNS.keys())
def test_the_service_holds_against_the_crowd(seed, workers, limit):
    stand_local(seed, workers, limit)


def test_the_service_holds_against_a_crowd_from_a_new_seed():
    stand_local(RANDOM_SEED, 1, LIMIT)


@pytest.mark.docker
def test_an_image_holds_against_the_crowd_straight_at_its_address(engine):
    tag = image_tag(require_image(reliability.CROWD_IMAGE))
    settings = reliability.crowd_settings(2, None)
    with crowd.container_service(tag, settings) as served:
        outcome = crowd.stand(served, 1224, CONNECTIONS, SECONDS)
    assert_held(outcome, settings, tag)


# ---- the plan, without a server ----------------------------------------------------------------------------

def test_a_seed_plans_the_same_crowd_every_time_and_another_seed_another():
    assert crowd.plan_crowd(7, 500, 8.0) == crowd.plan_crowd(7, 500, 8.0)
    assert crowd.plan_crowd(7, 500, 8.0) != crowd.plan_crowd(8, 500, 8.0)


def test_the_plan_holds_every_behaviour_in_its_share_and_ends_each_connection_in_time():
    plan = crowd.plan_crowd(11, 4000, 8.0)
    assert len(plan) == 4000
    counts = {name: sum(script.behaviour == name for script in plan) for name in crowd.BEHAVIOURS}
    for name, share in crowd.BEHAVIOURS.items():
        assert abs(counts[name] / len(plan) - share) < 0.03, (name, counts)
    assert sum(script.arrives <= 1.0 for script in plan) >= crowd.SURGE_SHARE * len(plan)
    for script in plan:
        assert 0 <= script.arrives <= 8.0
        assert script.steps[-1].action in ("close", "reset")
        assert all(step.at <= 8.0 - script.arrives for step in script.steps)
        assert [step.at for step in script.steps] == sorted(step.at for step in script.steps)


def test_the_crowd_goes_only_to_loopback_or_a_private_bridge():
    assert crowd.allowed_host("127.0.0.1") and crowd.allowed_host("172.17.0.2") and crowd.allowed_host("::1")
    with pytest.raises(ValueError, match="only to loopback"):
        crowd.allowed_host("8.8.8.8")


# ---- the study's section: its guarantee and its report --------------------------------------------------------

def synthetic_run(held: bool = True) -> dict:
    tally = {"opened": 10, "connected": 10, "not_connected": 0, "answered": 3, "answers": 3, "closed_by_server": 4}
    settings = reliability.crowd_settings(2, LIMIT)
    return {"server": "local", "settings": settings,
            "command": crowd.replay_command(42, 100, 8.0, settings), "seed": 42, "connections": 100,
            "seconds": 8.0, "design": crowd.design(),
            "crowd": {"seconds": 8.0, "cpu_seconds": 0.5, "peak_open": 90, "unopened": 0,
                      "by_behaviour": dict.fromkeys(crowd.BEHAVIOURS, tally)},
            "probe": {"probes": 16, "answered": 16, "within_bound": 16 if held else 15, "failures": 0 if held else 1,
                      "p50_seconds": 0.004, "p99_seconds": 0.2, "max_seconds": 0.2 if held else 1.5,
                      "bound_seconds": 1.0, "timeout_seconds": 5.0},
            "alive": True, "exit_code": None, "log_alarms": [], "processes": 3, "processes_replaced": [],
            "descriptors": {"idle": 9, "peak": 120, "after": 9}, "held": held,
            "reasons": [] if held else ["1 of 16 fresh clients were not answered 200 within 1 s"]}


def test_a_crowd_that_was_not_held_is_a_broken_guarantee_and_its_report_says_how_to_replay_it(tmp_path):
    from test_bench import synthetic_reliability

    results = synthetic_reliability()
    results["crowd"] = [synthetic_run()]
    assert reliability.failures(results) == []
    reliability.STUDY.write(reliability.evaluate(results), tmp_path)
    text = (tmp_path / "reliability.md").read_text()
    assert "## A hostile crowd" in text
    assert "| python -m service, APP_WORKERS=2 APP_CONNECTION_LIMIT=50 | 42 |" in text
    assert ("`python -m bench.crowd --seed 42 --connections 100 --seconds 8 --env APP_WORKERS=2 "
            "--env APP_CONNECTION_LIMIT=50`") in text
    assert reliability.STUDY.check(tmp_path) == []
    results["crowd"] = [synthetic_run(held=False)]
    assert reliability.failures(results) == [
        "the crowd against python -m service, APP_WORKERS=2 APP_CONNECTION_LIMIT=50 (seed 42) broke it: 1 of 16 "
        "fresh clients were not answered 200 within 1 s (replay: python -m bench.crowd --seed 42 --connections 100 "
        "--seconds 8 --env APP_WORKERS=2 --env APP_CONNECTION_LIMIT=50)"]
