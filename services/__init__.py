"""The domain: spec compiler, engines, comparison and the Redis result store."""
