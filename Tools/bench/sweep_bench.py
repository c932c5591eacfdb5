#!/usr/bin/env python3
"""The sweep group (§3) alone: Tools/bench/run.sh --only sweep [--sweep-scale 0.5] [--runs 3].

--scale is taken as --sweep-scale, as before. The measurements live in benchlib/group_sweep.py; this file is kept so that the command quoted
in docs/BENCHMARKS.md still works. Every option of run.py is accepted."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

if __name__ == "__main__":
    args = ["--sweep-scale" if x == "--scale" else x for x in sys.argv[1:]]   # the old option name
    sys.exit(run.main(["--only", "sweep"] + args))
