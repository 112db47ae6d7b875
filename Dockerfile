# hello-api on the official Python slim image.
#   docker build -t hello-api:slim .
#   docker run -p 8080:5000 -e APP_ENV=production hello-api:slim
# Air-gapped or behind a registry mirror: --build-arg PYTHON_IMAGE=<your python 3.x slim image>.
# Behind a TLS-intercepting proxy: --secret id=pip_ca,src=<PEM bundle pip should trust>.

ARG PYTHON_VERSION=3.13
ARG PYTHON_IMAGE=python:${PYTHON_VERSION}-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /app
# Dependencies first: this layer and the pip run below stay cached while only service/ changes.
COPY requirements.lock .
# Wheels only, every hash checked: nothing gets built or fetched that the lock does not name.
# The CA secret is mounted only for this step and never stored in a layer.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    python3 -m pip install --require-hashes --only-binary :all: --target /app/deps -r requirements.lock
# Bytecode made now starts faster, and a read-only root file system never has to write it.
# unchecked-hash: the image is immutable, so Python need not stat sources to validate the cache.
RUN python3 -m compileall -q --invalidation-mode unchecked-hash /app/deps
COPY service/ service/
RUN python3 -m compileall -q --invalidation-mode unchecked-hash service

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=1.0.0
LABEL org.opencontainers.image.title="hello-api" \
      org.opencontainers.image.description="Standard-library WSGI API served by waitress (slim variant)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
# A fixed UID (distroless's nonroot) so volume ownership and policies match across both variants.
RUN groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid nonroot --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin nonroot
ENV PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app:/app/deps \
    APP_ENV=development \
    APP_PORT=5000
WORKDIR /app
COPY --from=build /app/deps /app/deps
COPY --from=build /app/service /app/service
# The base has no bytecode for the standard library (the official python images delete it; distroless
# never runs Debian's py3compile). One import writes it for exactly the modules the service loads: a few
# hundred KB that save every container start from compiling them again.
RUN ["python3", "-c", "import service.server, service.healthcheck"]
ENV PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
EXPOSE 5000
# The service's own check: the image needs no curl, and the same command works in distroless.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python3", "-m", "service.healthcheck"]
# ENTRYPOINT, as in the distroless image: `docker run IMAGE --help` reaches the service in both; for a
# shell, `docker run --entrypoint bash IMAGE`.
ENTRYPOINT ["python3", "-m", "service"]
