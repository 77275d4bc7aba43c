"""The independent plan evaluator: it shares no code with the methods."""
