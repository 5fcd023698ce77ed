"""Leslie Smith's LR range test (issue #6): ramp the LR exponentially over a spec's model and
data, record the batch loss per step, and suggest an LR (`suggest.py`, pure)."""
