"""The studies, one module each; every one declares a `results.Study` (see bench/results.py)."""

from . import coldstart, commits, compare, latency, profile, reliability, rollout, study, workers

STUDIES = (study.STUDY, compare.STUDY, reliability.STUDY, latency.STUDY, workers.STUDY, rollout.STUDY,
           coldstart.STUDY, commits.STUDY, profile.STUDY)
STUDY = study.STUDY  # the default; `compare` writes the same files, `report` and `check` read them through this


def by_files() -> list:
    """One study per JSON file name: what `report` and `check` go through."""
    seen, distinct = set(), []
    for declared in STUDIES:
        if declared.json not in seen:
            seen.add(declared.json)
            distinct.append(declared)
    return distinct
