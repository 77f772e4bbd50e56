"""Build hook for the optional native speedups; all metadata is in pyproject.toml.

The extension is optional: where no C compiler is at hand the install still
succeeds and ci-fanout runs on its pure-Python reference code. ``CI_FANOUT_PURE=1``
builds without it (the ``py3-none-any`` wheel of a release, for platforms no binary
wheel covers).
"""

import os

from setuptools import Extension, setup

PURE = os.environ.get("CI_FANOUT_PURE", "") not in ("", "0")

setup(
    ext_modules=[]
    if PURE
    else [
        Extension(
            "ci_app.artifacts._speedups",
            ["ci_app/artifacts/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wno-unused-parameter"],
        )
    ]
)
