"""`qlab selftest --device cuda|cpu`: the first command to run on a new machine (kernels.py, bandwidth.py,
loop.py; run.py ties them together, summary.py writes the one-page summary). See README.md."""
