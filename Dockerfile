# One image for both programs: `skyserve` (the default) and `kube2etcd`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY setup.py pyproject.toml README.md ./
COPY skydns ./skydns
COPY skyserve ./skyserve
COPY kube2etcd ./kube2etcd
RUN pip install --no-cache-dir --prefix=/install . \
 && python -m compileall -q /install

FROM python:3.11-slim
COPY --from=build /install /usr/local
# Non-root; listens on 1053 so it needs no capability (the Service maps 53 -> 1053).
USER 65532:65532
# Exec form, so SIGTERM reaches the program itself (lameduck needs it).
ENTRYPOINT ["skyserve"]
