"""Benchmarks of the tutorial's scripts against bare kafka-python loops and kcat: `make bench`.

See bench/README.md for what each case measures and how; bench/results.md for the figures.
"""
