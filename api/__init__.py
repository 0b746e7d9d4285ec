"""The HTTP API: submit specs, poll jobs, fetch tensors and graphs."""
