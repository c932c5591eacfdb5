"""Modules of the ckstore benchmark (Tools/bench/run.sh → run.py).

measure: timing, peak RSS, sync/drop_caches, statistics; env: machine description and the
binary; data: generated trajectories; store: a ckstore store driven through its CLI; report:
table rows and target checks; groups: one module per group of rows (group_*.py)."""
