"""The `gradtrace` command line: run traces in-process, or talk to the service."""
