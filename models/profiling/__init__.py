"""Latency curves (SPEC `profiles.csv`) predicted from measured step times.

`table` reads and interpolates the measured step times, `workload` draws the
requests, `standins` maps served models to measured ones, `analytic` is the
queueing model of the server, `deployments` lists what an instance needs
profiled, `profiles` builds and writes the curves, and `cli.main` is the
command. docs/latency.md states the assumptions.
"""
