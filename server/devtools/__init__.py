"""Development tools: the `make run` orchestrator and the demo seed. Never imported by production code."""
