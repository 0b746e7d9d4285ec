"""`python -m bench [--quick]`: see bench/README.md."""

import os
import sys

from bench.stack import MALLOC_ENV

if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
    # glibc reads MALLOC_* only at start-up: run again with them, so that the in-process baselines
    # allocate the way the benchmark's worker (and the Docker image) does
    os.execve(sys.executable, [sys.executable, "-m", "bench", *sys.argv[1:]], {**os.environ, **MALLOC_ENV})

from bench.run import main  # noqa: E402

raise SystemExit(main())
