"""ci-fanout's options: one engine (:mod:`~ci_app.options.engine`: typed frozen dataclasses,
one cascade defaults → TOML → ``CI_FANOUT_*`` → flags) and its tables: the CI steps'
(:mod:`~ci_app.options.ci`), the server's (:mod:`~ci_app.options.server`), the browser
pool's (:mod:`~ci_app.options.browser`) and every other environment variable
(:mod:`~ci_app.options.env`)."""
