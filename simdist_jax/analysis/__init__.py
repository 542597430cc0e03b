"""Analyses of trained runs: oracle ceilings, chunk ranking, probes, Go2 tracking, the report."""
