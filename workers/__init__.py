"""The Huey entry point: `huey_consumer workers.huey` or `ywm worker`.

Importing this package imports the Huey instance and every task module, so the consumer
knows every task name (huey docs/imports.rst). Add new task modules to the list below.
"""
from server.queue import huey
from workers import ops, reconcile, recurring, runtime, sends  # noqa: F401  (registers tasks, hooks)
from workers import events  # noqa: F401  (stream event-log pruning)
from workers import inbound  # noqa: F401  (webhook dedupe pruning)

__all__ = ["huey"]
