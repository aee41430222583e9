"""Calibration of the predictor: one home for fitting efficiencies (from published rows and from a profile)."""
