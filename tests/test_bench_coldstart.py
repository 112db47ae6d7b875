"""`python -m bench coldstart` without Docker: the link's rate and bucket, the report, its check and guarantee, on
synthetic figures (CI runs the study itself: .ci/run)."""

import copy

import pytest

from bench import coldnode
from bench.load import summary
from bench.studies import coldstart

REFUSED = ("docker -H unix:///n/docker.sock pull -q R failed (1): failed to register layer: Error processing tar "
           "file(exit status 1): archive/tar: invalid tar header")


def rate_figures(pull: float, start: float, moved: int) -> dict:
    return {"pull_seconds": summary([pull, pull * 1.1]), "start_seconds": summary([start, start]),
            "total_seconds": summary([pull + start, pull * 1.1 + start]), "warm_start_seconds": summary([0.2, 0.25]),
            "bytes_moved": moved, "runs": []}


def synthetic() -> dict:
    images = {}
    for image, size in (("seed", 46_600_000), ("micro", 5_700_000)):
        gzip = {"image": image, "reference": f"10.203.0.2:5051/gzip/{image}:latest", "compression": "gzip",
                "layer_bytes": size, "rates": {"100mbit": rate_figures(size * 8 / 1e8, 0.4, size + 9_000),
                                               "1gbit": rate_figures(size * 8 / 1e9 + 0.3, 0.4, size + 9_000)}}
        zstd = {"image": image, "reference": f"10.203.0.2:5051/zstd/{image}:latest", "compression": "zstd",
                "layer_bytes": int(size * 0.9), "unsupported": REFUSED}
        images[image] = {"tag": f"hello-api:{image}", "note": "n", "compressions": {"gzip": gzip, "zstd": zstd}}
    return {"date": "2026-12-07T00:00:00Z", "mode": "quick", "command": "python -m bench coldstart --quick",
            "plan": {"quick": True, "rounds": 1}, "load_average": {"start": 0.1, "end": 0.2},
            "machine": {"cpus": 2, "docker_server": "20.10.24"}, "rates": ["100mbit", "1gbit"],
            "compressions": ["gzip", "zstd"], "images": images}


@pytest.mark.parametrize(("rate", "bits"), [("100mbit", 100_000_000), ("1gbit", 1_000_000_000), ("512kbit", 512_000),
                                            ("2.5gbit", 2_500_000_000)])
def test_a_rate_is_read_as_tc_writes_it(rate, bits):
    assert coldnode.rate_bits(rate) == bits


def test_a_rate_tc_would_not_read_is_refused_and_the_bucket_holds_two_ticks_of_it():
    with pytest.raises(ValueError, match="write a rate as tc does"):
        coldnode.rate_bits("100 Mbps")
    assert coldnode.burst_bytes("1gbit") == 2 * 1_000_000_000 // 8 // coldnode.TICKS_PER_SECOND
    assert coldnode.burst_bytes("1mbit") == 64 * 1024  # never below 64 KiB


def test_a_written_coldstart_report_passes_the_check_and_a_tampered_one_fails(tmp_path):
    coldstart.STUDY.write(synthetic(), tmp_path)
    text = (tmp_path / "coldstart.md").read_text()
    assert "| `micro` | gzip 5.7 MB | 5.7 MB | 0.48 s (0.46–0.50) | 0.40 s (0.40–0.40) | **0.88 s** |" in text
    assert "| `seed` | zstd 41.9 MB | this engine does not pull it (below) |" in text
    assert ("zstd: Docker 20.10.24 downloads zstd layers but could not unpack them, so only gzip was measured on it. "
            "It said: `failed to register layer: Error processing tar file(exit status 1): archive/tar: invalid tar "
            "header`") in text
    assert coldstart.STUDY.check(tmp_path) == [] and coldstart.gaps(synthetic()) == []
    (tmp_path / "coldstart.md").write_text(text.replace("first answer", "first reply"))
    assert coldstart.STUDY.check(tmp_path)


def test_a_pull_that_moved_fewer_bytes_than_its_layers_breaks_the_guarantee_and_a_failure_is_a_gap():
    cached = synthetic()
    cached["images"]["micro"]["compressions"]["gzip"]["rates"]["1gbit"]["bytes_moved"] = 1_000
    assert coldstart.guarantees(cached) == ["micro (gzip) at 1gbit: the pull moved 1,000 bytes over the link, "
                                            "fewer than its layers' 5,700,000"]
    failed = copy.deepcopy(synthetic())
    del failed["images"]["seed"]["compressions"]["gzip"]["rates"]
    assert coldstart.shape(failed) == [f"seed (gzip) has no figures at {rate} and no problem saying why"
                                       for rate in ("100mbit", "1gbit")]
    failed["images"]["seed"]["compressions"]["gzip"]["problem"] = "docker run on the node failed"
    assert coldstart.shape(failed) == [] and coldstart.gaps(failed) == ["seed (gzip): docker run on the node failed"]
