"""The reference servers: the service's app under gunicorn (gthread) and granian (WSGI), from an image built
on the same slim base for the bench only (bench/reference/), what `workers` and `latency` measure beside it."""

from images.docker import ROOT
from images.variants import BENCH, IMAGE, Variant

REFERENCE = Variant("reference", f"{IMAGE}:reference", BENCH / "reference" / "Dockerfile", ROOT,
                    "the same app under gunicorn or granian, same slim base; for the bench only")
