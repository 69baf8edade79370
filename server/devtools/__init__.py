"""Development tools: the `make run` orchestrator, the local cluster and the demo seed.
Never imported by production code."""
