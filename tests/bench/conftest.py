"""The benchmark is run with ``python -m tests.bench.run``; pytest collects nothing here."""

collect_ignore_glob = ["*"]
