"""Label and reconcile tests build profiles with the probe's fixture trees (fake /proc, NVML)."""

from tests.runner_probe.conftest import profile_for  # noqa: F401 - the fixture, used here too
