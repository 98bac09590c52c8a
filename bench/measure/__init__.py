"""Measurements: latency (paired ratios), peak memory (fresh process), size, quality, FLOPs."""
