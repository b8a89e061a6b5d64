# One image for both programs: `skyserve` (the default) and `kube2etcd`.
# BASE: any image with Python 3.11 and its venv module. python:3.11-slim where a registry is
# reachable; scripts/build-image --base debian builds one from Debian packages where none is.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
WORKDIR /src
# A venv, so that the same steps work on python:3.11-slim and on Debian's python3 (which has
# no pip of its own and refuses system-wide installs).
RUN python3 -m venv /opt/skyserve
COPY setup.py pyproject.toml README.md ./
COPY skydns ./skydns
COPY skyserve ./skyserve
COPY kube2etcd ./kube2etcd
# The optional secret ca-bundle is the CA bundle pip trusts on the build machine (where a TLS
# proxy stands between it and the package index); scripts/build-image passes it.
RUN --mount=type=secret,id=ca-bundle \
    if [ -f /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && /opt/skyserve/bin/pip install --no-cache-dir --disable-pip-version-check -q . \
 && /opt/skyserve/bin/python -m compileall -q /opt/skyserve

FROM ${BASE}
COPY --from=build /opt/skyserve /opt/skyserve
ENV PATH=/opt/skyserve/bin:$PATH PYTHONUNBUFFERED=1
# Non-root; listens on 1053 so it needs no capability (the Service maps 53 -> 1053).
USER 65532:65532
# Exec form, so SIGTERM reaches the program itself (lameduck needs it).
ENTRYPOINT ["skyserve"]
