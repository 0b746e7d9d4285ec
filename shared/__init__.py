"""The contract: pydantic models of specs and results, settings and tensor codecs."""
