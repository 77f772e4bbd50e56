"""``make docs``: regenerate every file that is generated from code.

``docs/ci.md``'s option reference and the README's input table (:mod:`ci_app.ci_options`),
``docs/labels.md`` (:mod:`ci_app.model.labels`), and the CI files users include: ``action.yml``,
``.gitlab-ci-template.yml``, ``templates/ci-fanout.yml`` (:mod:`ci_app.ci.files`). Tests fail when
any of them is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ci_app import ci_options
from ci_app.ci import files
from ci_app.model.labels import render_labels_markdown


def regenerate(root: Path) -> list[str]:
    """Rewrite the stale generated files under ``root``; returns their paths."""
    changed = files.write(root)
    if ci_options.update_docs(root / "docs" / "ci.md"):
        changed.append("docs/ci.md")
    readme = root / "README.md"
    body = ci_options.render_readme()
    if ci_options.update_generated(readme, ci_options.README_BEGIN, ci_options.README_END, body):
        changed.append("README.md")
    labels = root / "docs" / "labels.md"
    text = render_labels_markdown()
    if labels.read_text(encoding="utf-8") != text:
        labels.write_text(text, encoding="utf-8")
        changed.append("docs/labels.md")
    return changed


def main() -> int:
    changed = regenerate(Path.cwd())
    for rel in changed:
        sys.stdout.write(f"updated {rel}\n")
    if not changed:
        sys.stdout.write("generated files are up to date\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
