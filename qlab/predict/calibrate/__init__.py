"""Calibration of the predictor: the one home for fitting efficiencies.

- `rows`: the published measurements the project fits on (CSV files in `qlab/predict/data/`, each row with
  its source) and how a parameter set predicts one row, exactly as `qlab.predict.predict` would;
- `fit`: the least-squares fit of those rows (`scripts/calibrate.py` is its command-line entry point) that
  writes `qlab/predict/calibration.json`;
- `from_profile`: efficiencies from a profile measured on the machine at hand (`qlab profile`).

Imports go one way: calibrate -> predict.core/efficiency/workload, never back.
"""
