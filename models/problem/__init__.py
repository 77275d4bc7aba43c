"""The problem: instances, plans, the latency model, setups, the transportation problem, the solver wrapper."""
