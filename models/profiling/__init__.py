"""Latency curves (SPEC `profiles.csv`) predicted from measured step times.

`table` reads and interpolates the measured step times, `workload` draws the
requests, `standins` maps served models to measured ones, `simulator` is the
vLLM-style server (checked against the simpy `reference`), `sweep` runs it
from low load to saturation, `analytic` is the closed-form cross-check,
`deployments` lists what an instance needs profiled, `profiles` builds and
writes the curves, and `cli.main` is the command. docs/latency.md states the
assumptions.
"""
