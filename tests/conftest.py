import os
import sys

# The suite imports helpers that live next to the tests.
sys.path.insert(0, os.path.dirname(__file__))
# Reference tests use torch; two threads keep it from oversubscribing the 2-core machines.
os.environ.setdefault("OMP_NUM_THREADS", "2")
