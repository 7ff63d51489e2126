"""Performance benchmarks named in the issues; run them all with ``make bench``."""
