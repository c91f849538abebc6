"""The pipeline: from a dataset and codec configurations to stored measurements (plan → measure → store).

Modules: ``runner`` (``run_benchmark``: plans, hands jobs to an executor, writes each result to the
store), ``planning`` (which measurements are missing, in what order; ``--dry-run``'s plan),
``inputs`` (the run's images, decoded once into a folder the run holds locked), ``targets``
(quality search for target bit rates), ``worker`` (what one job does in its process: encode, decode, metrics),
``measure`` (the timed encode/decode and the decode-from-bytes check) and ``provenance`` (machine,
libraries, commit).

The pipeline sits above the store and the executors (it writes to one and uses the other) and
below analysis and the report, which read the store only.
"""
