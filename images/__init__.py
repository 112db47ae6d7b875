"""Build tooling the images run at build time (copied in by the Dockerfiles; standard library only): the micro
image's tracer (micro/), the SBOM writer (sbom.py) and the standard library's bytecode (bytecode.py)."""
