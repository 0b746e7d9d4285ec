# One image for the gradtrace API (gunicorn, the default command), the Celery worker and Flower.
#
# Build arguments (the defaults are what users want; deploy/compose-test overrides them to build offline):
#   BASE_IMAGE       a Debian-based Python 3.11 image with pip on the PATH
#   TORCH_INDEX_URL  where the CPU build of torch comes from
#   WHEELHOUSE       a folder of wheels bind-mounted into the build (`podman build -v DIR:/tmp/wheelhouse:ro
#                    --build-arg WHEELHOUSE=/tmp/wheelhouse`): when set, every pip install takes only from it
#                    (--no-index), torch included, and nothing of it lands in an image layer
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS base

# MALLOC_*: glibc keeps freed tensor buffers (up to 64 MiB) for reuse instead of an mmap/munmap per
# array; a traced CNN at batch 128 ran about 25% faster with them (bench/README.md).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_MMAP_THRESHOLD_=67108864 \
    MALLOC_TRIM_THRESHOLD_=134217728 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# graphviz: the `dot` binary renders the backward graph as SVG.
RUN apt-get update \
    && apt-get install -y --no-install-recommends graphviz \
    && rm -rf /var/lib/apt/lists/*

# The CPU build of torch first, from PyTorch's CPU index (or the wheelhouse), so the project's install finds
# torch==2.13.0 already satisfied and never pulls a CUDA build from PyPI. Its own layer: cached across
# source changes.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG WHEELHOUSE=
RUN if [ -n "$WHEELHOUSE" ]; then from="--no-index --find-links=$WHEELHOUSE"; else from="--index-url=$TORCH_INDEX_URL"; fi \
    && pip install $from torch==2.13.0 \
    && python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__; assert not torch.version.cuda, 'CUDA build'"

# The project's wheel, built in a stage of its own: its build folder and build tools stay out of the image.
FROM base AS build
ARG WHEELHOUSE=
WORKDIR /src
COPY . .
RUN pip wheel --no-deps ${WHEELHOUSE:+--no-index --find-links=$WHEELHOUSE} --wheel-dir /dist .

FROM base
ARG WHEELHOUSE=
# The project's dependencies (read from pyproject.toml: this layer changes only with them), plus flower for the
# `monitoring` compose profile; then the project's wheel alone; then check torch stayed the CPU build.
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install ${WHEELHOUSE:+--no-index --find-links=$WHEELHOUSE} -r /tmp/requirements.txt "flower>=2.0" \
    && rm /tmp/pyproject.toml /tmp/requirements.txt
# COPY, not a bind mount: buildah (podman) keys a RUN's cache on its text, not on what a mount holds, and reused
# the previous source's layer; COPY's key is the wheel's content. The wheel (~250 KB) stays in that layer.
COPY --from=build /dist /tmp/dist
RUN pip install --no-deps /tmp/dist/*.whl \
    && rm -rf /tmp/dist \
    && python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__; assert not torch.version.cuda, 'CUDA build'; import api.app, worker.tasks"

# Healthchecks (a script, so that they need no shell and no variable the exec'ing engine may leave empty) and
# Flower's entrypoint (it refuses to start without FLOWER_BASIC_AUTH).
COPY deploy/healthcheck /usr/local/bin/gradtrace-healthcheck
COPY deploy/flower-entrypoint /usr/local/bin/gradtrace-flower-entrypoint

WORKDIR /app
# gunicorn reads gunicorn.conf.py from the working directory
COPY gunicorn.conf.py /app/

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin gradtrace
USER gradtrace

EXPOSE 8000
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--access-logfile", "-", "api.app:create_app()"]
