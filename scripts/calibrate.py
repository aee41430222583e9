"""Refit the predictor on the published rows in qlab/predict/data/ and write qlab/predict/calibration.json.

    python scripts/calibrate.py [--verbose] [--no-lodo]

The fit lives in `qlab.predict.calibrate.fit` (one calibration home); this is only its entry point.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qlab.predict.calibrate.fit import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
