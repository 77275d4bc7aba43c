"""Latency curves (SPEC `profiles.csv`) predicted from measured step times.

`table` reads and interpolates the measured step times, `gpus` scales them
to another GPU type by measured ratios, `overheads` reads the measured CPU
time per iteration, `workload` draws the requests, `standins` maps served
models to measured ones, `simulator` is the vLLM-style server
(checked against the simpy `reference`), `replay` runs recorded requests
through it, `calibration` fits its two global parameters to measured vLLM
runs, `sweep` runs it from low load to the highest load it sustains,
`analytic` is the closed-form cross-check, `deployments` lists what an
instance needs profiled, `profiles` builds and writes the curves, and
`models/cli/profile.py` is the command. docs/latency.md states the
assumptions.
"""
