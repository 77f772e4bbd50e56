"""Build hook for the optional native speedups; all metadata is in pyproject.toml.

The extension is optional: where no C compiler is at hand the install still
succeeds and ci-fanout runs on its pure-Python reference code.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ci_app.artifacts._speedups",
            ["ci_app/artifacts/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wno-unused-parameter"],
        )
    ]
)
