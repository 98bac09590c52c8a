"""prunebench's measuring side: plans, runtimes, measurements, records, reports, CLI."""

__version__ = "0.1.0"
