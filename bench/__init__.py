"""Hearth's benchmark suite (issues 9 and 20): Hearth and two minimal relays (autobahn and
Node.js ws), same load, same run.

`python -m bench` runs every scenario; `bench.crossnode` spreads rooms over three nodes and
Redis; `bench.soak` holds a load for 20 minutes; `bench.profile` and `bench.micro` measure
one fixed load. See README.md ("Benchmarks") and docs/performance.md for what is measured
and why.
"""
