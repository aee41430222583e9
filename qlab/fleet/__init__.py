"""`qlab fleet`: the same `qlab profile` run on many machines of a Ray cluster, and one report comparing them.

The fleet layer only places, collects and retries: what runs on a node is the ordinary profile code
(`qlab.profile`). Ray is an optional extra (`pip install -e '.[fleet]'`).
"""
