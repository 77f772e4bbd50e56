"""runner-probe: detect a machine's hardware and keep its CI runner labels true."""

__version__ = "0.1.0"
