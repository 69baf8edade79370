"""The Huey entry point, run by `ywm worker`.

Importing this package imports the Huey instance and every task module, so the consumer
knows every task name (huey docs/imports.rst). Add new task modules to the list below.
`ywm worker` hands the queue its settings before the consumer starts (server/cli.py); a
bare `huey_consumer workers.huey` would find the queue unconfigured and say so.
"""
from server.platform.queue import huey
# Each import registers its tasks and hooks on `huey`.
from workers import archive  # noqa: F401
from workers import events, inbound, ops, reconcile, recurring, runtime, sends  # noqa: F401
from workers import webhooks  # noqa: F401

__all__ = ["huey"]
