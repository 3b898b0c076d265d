"""Replay: the committed run's completions, cosines and adapter receipts, exported by `make ship` and imported before `make all`."""
