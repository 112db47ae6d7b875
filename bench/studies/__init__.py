"""The studies, one module each; every one declares a `results.Study` (see bench/results.py)."""

from . import commits, compare, latency, preset, profile, reliability, rollout, workers

STUDIES = (preset.STUDY, compare.STUDY, reliability.STUDY, latency.STUDY, workers.STUDY, rollout.STUDY,
           commits.STUDY, profile.STUDY)
IMAGE_STUDY = preset.STUDY  # `compare` writes the same files; `report` and `check` read them through this one


def by_files() -> list:
    """One study per JSON file name: what `report` and `check` go through."""
    seen, distinct = set(), []
    for study in STUDIES:
        if study.json not in seen:
            seen.add(study.json)
            distinct.append(study)
    return distinct
