# One image for the gradtrace API (gunicorn, the default command), the Celery worker and Flower.
FROM python:3.11-slim

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

# The CPU build of torch first, from PyTorch's CPU index, so `pip install .` finds torch==2.13.0
# already satisfied and never pulls a CUDA build from PyPI. Its own layer: cached across source changes.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

WORKDIR /app
COPY . .
# The project, plus flower for the `monitoring` compose profile; then check torch stayed the CPU build.
RUN pip install . "flower>=2.0" \
    && python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__; assert not torch.version.cuda, 'CUDA build'"

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin gradtrace
USER gradtrace

EXPOSE 8000
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--access-logfile", "-", "api.app:create_app()"]
