# Generated from images/templates/ (slim.template, build.template) by `python -m images dockerfiles`.
# hello-api on the official Python slim image.
#   docker build -t hello-api:slim .
#   docker run -p 8080:5000 -e APP_ENV=production hello-api:slim
# Air-gapped or behind a registry mirror: --build-arg PYTHON_IMAGE=<your python 3.x slim image>.
# Behind a TLS-intercepting proxy: --secret id=pip_ca,src=<PEM bundle pip should trust>.

ARG PYTHON_VERSION=3.13
ARG PYTHON_IMAGE=python:${PYTHON_VERSION}-slim

# The build stage, the same in the three Dockerfiles (images/templates/build.template), so their builds share
# its cache: waitress and the service (and an app of your own), compiled, every file time the epoch.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /app
# Your own app instead of hello-api: APP_LOCK, its lock file (waitress pinned in it too, all with hashes), and
# APP_SOURCE, its package folder, both paths in the build context (add the folder to .dockerignore's list).
ARG APP_LOCK=requirements.lock
ARG APP_SOURCE=service
# Dependencies first: this layer and the pip run below stay cached while only the code changes.
COPY ${APP_LOCK} requirements.lock
# Wheels only, every hash checked: nothing gets built or fetched that the lock does not name. Installed
# with --target, not into a venv: a venv's interpreter link would point at this stage's Python, which the
# distroless and micro images do not have. The CA secret is mounted only for this step, never in a layer.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    python3 -m pip install --no-compile --require-hashes --only-binary :all: --target /app/deps \
    -r requirements.lock
# Bytecode made now starts faster, a read-only root file system never has to write it, and the shell-less
# runtimes could not compile anything later. unchecked-hash: the image is immutable, so Python need not stat
# sources to validate the cache. The server runs on waitress: a lock of your own must pin it too.
RUN python3 -m compileall -q --invalidation-mode unchecked-hash /app/deps \
 && { [ -d /app/deps/waitress ] || { echo "${APP_LOCK} installs no waitress, which the server needs: copy its" \
      "line from requirements.lock" >&2; exit 1; }; }
COPY service/ service/
RUN python3 -m compileall -q --invalidation-mode unchecked-hash service
# The app's package folder, from anywhere in the context, becomes /app/<the folder's name>, the name
# APP_WSGI imports it by (hello-api's own is service/, copied above: the same files again).
COPY ${APP_SOURCE} /tmp/app/
RUN name="$(basename "${APP_SOURCE}")" && mkdir -p "/app/${name}" && cp -a /tmp/app/. "/app/${name}/" \
 && rm -rf /tmp/app && python3 -m compileall -q --invalidation-mode unchecked-hash "${name}"
# Reproducible layers: BuildKit 0.8 copies file times into the runtime's layers as they are and knows no
# SOURCE_DATE_EPOCH, so what the runtime gets, /image/app's deps, service and app, has the epoch everywhere
# (pip and compileall wrote it at build time; pip compiles nothing, the bytecode is compileall's
# unchecked-hash: no source time inside). The runtime copies /image/'s contents into /: a COPY's own target
# directory would get the time of the build, its contents keep theirs.
RUN name="$(basename "${APP_SOURCE}")" && mkdir -p /image/app && cp -a /app/deps /app/service /image/app/ \
 && if [ "${name}" != service ]; then cp -a "/app/${name}" /image/app/; fi \
 && find /image -exec touch -h -d @0 {} +

FROM ${PYTHON_IMAGE} AS app
ARG VERSION=1.0.0
LABEL org.opencontainers.image.title="hello-api" \
      org.opencontainers.image.description="Standard-library WSGI API served by waitress (slim variant)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
# A fixed UID (distroless's nonroot) so volume ownership and policies match across both variants.
# SOURCE_DATE_EPOCH: shadow's useradd writes it as the last password change (else the day of the build);
# every file the two commands wrote, and their directories, get the epoch (reproducible layers; the three
# files BuildKit mounts read-only for the step are not the image's).
RUN start=$(date +%s) \
 && groupadd --system --gid 65532 nonroot \
 && SOURCE_DATE_EPOCH=0 useradd --system --uid 65532 --gid nonroot --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin nonroot \
 && find /etc /var -xdev -newermt "@$((start - 1))" ! -path /etc/hosts ! -path /etc/hostname \
         ! -path /etc/resolv.conf -exec touch -h -d @0 {} +
# The app the server serves (empty: hello-api) and the path its health check GETs, as build arguments so
# that an image of your own app serves it with no -e at `docker run`.
ARG APP_WSGI=
ARG APP_HEALTH_PATH=/health
ENV PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app:/app/deps \
    APP_ENV=development \
    APP_PORT=5000 \
    APP_WSGI=${APP_WSGI} \
    APP_HEALTH_PATH=${APP_HEALTH_PATH}
COPY --from=build /image/ /
WORKDIR /app

# The standard library's bytecode for exactly the modules the service loads: neither base ships it (the
# official python images delete it; distroless never runs Debian's py3compile), and a few hundred KB save
# every container start from compiling them again. Made in a stage apart (images/bytecode.py: a RUN in the
# runtime would leave the build's time on /etc in the layer) and copied in with the epoch as every time.
FROM app AS bytecode
# hadolint ignore=DL3002
USER 0
COPY images/bytecode.py /tmp/build/
RUN ["python3", "/tmp/build/bytecode.py", "/tmp/build/out"]

# contents: everything the image ships but its SBOM, which the next stage writes from it.
FROM app AS contents
COPY --from=bytecode /tmp/build/out/ /
ENV PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
EXPOSE 5000
# The service's own check: the image needs no curl, and the same command works in distroless.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python3", "-m", "service.healthcheck"]
# ENTRYPOINT, as in the distroless image: `docker run IMAGE --help` reaches the service in both; for a
# shell, `docker run --entrypoint bash IMAGE`.
ENTRYPOINT ["python3", "-m", "service"]

# The SBOM (images/sbom.py, CycloneDX 1.6): written from this image's own files and package database, so it
# describes exactly what ships; root here only to read and write, and this stage never runs as a container.
FROM contents AS sbom
# hadolint ignore=DL3002
USER 0
COPY images/sbom.py images/bytecode.py /tmp/sbom/
COPY --from=build /app/requirements.lock /tmp/sbom/
RUN ["python3", "/tmp/sbom/sbom.py", "slim", "/", "/tmp/sbom/requirements.lock", "/tmp/sbom/out"]

# runtime, the image: its contents and the SBOM in a last layer of its own, at
# /usr/share/doc/hello-api/sbom.json.
FROM contents AS runtime
# The commit and the repository, filled in by `python -m images build` from git. Labels are image
# configuration, not layers: the layer digests stay the same whatever they say.
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
COPY --from=sbom /tmp/sbom/out/ /
