"""lossradar's in-trainer hook: exact per-channel loss, loss reweighting and metric sinks.

Imports with nothing but torch (and numpy) installed.
"""
