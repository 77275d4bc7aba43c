"""A fault for the sweep's engine tests: the task of every scenario at FAULTY_TARGET_MS raises, as a bug
outside the solver would. `break_one_target` installs it in this process (local engine, with pytest's
monkeypatch) or in each Ray worker (the `worker_process_setup_hook` of tests/test_sweep_engines.py)."""

FAULTY_TARGET_MS = 33.0


def broken(sweep_row):
    """`sweep_row`, raising at FAULTY_TARGET_MS."""
    def row(instance, outcome):
        if instance.slo_mean_ttft_ms == FAULTY_TARGET_MS:
            raise RuntimeError("broken on purpose")
        return sweep_row(instance, outcome)
    return row


def break_one_target(setattr=setattr) -> None:
    import models.analysis.sweep as sweep

    setattr(sweep, "sweep_row", broken(sweep.sweep_row))
