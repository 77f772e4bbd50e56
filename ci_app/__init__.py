"""ci-fanout: hardware-aware CI fan-out with standardised test results."""

__version__ = "0.1.0"
