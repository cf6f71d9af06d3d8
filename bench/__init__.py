"""Hearth's benchmark suite (issue 9): Hearth and a minimal relay, same load, same run.

`python -m bench` runs every scenario; see README.md ("Benchmarks") and
docs/performance.md for what is measured and why.
"""
