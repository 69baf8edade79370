"""Benchmarks: load generators and harnesses, run on loopback only and bounded in time.

`python -m bench` (`make bench`) runs `bench.auth_me`. Results go to stdout and var/bench/;
docs/benchmarks.md keeps the figures with the command that produced them.
"""
