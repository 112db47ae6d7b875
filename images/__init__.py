"""Building and verifying the project's images (`python -m images build|bases|verify|dockerfiles`): the Docker CLI
(docker.py), the variants and their Builder (variants.py), the bases made without a registry (bases.py) and
the SBOM and rebuild checks (verify.py). And the tools the images run at build time, copied in by the
Dockerfiles, standard library only: the micro image's tracer (micro/), the SBOM writer (sbom.py) and the
standard library's bytecode (bytecode.py)."""
