"""`python -m bench`: run the benchmarks and write bench/results.md (see bench/harness.py)."""

import sys

from bench.harness import main

if __name__ == "__main__":
    sys.exit(main())
