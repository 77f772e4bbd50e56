"""The browser resource pool: warm Chromium processes and contexts for browser tests.

Inside each shard, around pytest: :mod:`ci_app.browser.plugin` (entry point
``ci_fanout_browser``) gives tests ``browser_page``, ``browser_workers`` and ``record_metric``;
:mod:`ci_app.browser.pool` keeps the browsers warm, checks each one's WebGPU adapter against
what the test asks for, and replaces a browser that crashed or hung;
:mod:`ci_app.browser.record` carries adapters, timings, metrics and infrastructure retries into
``results.json``. See ``docs/browser.md``.

Importing this package is cheap: Playwright is imported only when a pool starts.
"""
