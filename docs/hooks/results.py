"""mkdocs hooks: publish the benchmark and compatibility results (``results/``) in the site; tidy API types.

The docs link to ``../results/benchmark.md`` and friends, which is right on GitHub but outside ``docs_dir`` for
mkdocs (strict mode warns about such links). This hook adds the top-level files of ``results/`` to the site as if they
lived in ``docs/results/`` (Markdown files become pages, the rest are copied) and rewrites each page's links that
leave ``docs/`` for ``results/`` to point there. Stdlib and mkdocs only; nothing is written into the repository.

The docstrings write types transformers' way (``grad_norms (`Sequence[float]`, *optional*):``); mkdocstrings shows
such a type verbatim in a code cell, so the API page's type cells lose their backticks and asterisks.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
RESULTS = "results"
PUBLISHED = (".md", ".png", ".json", ".txt")
#: Result pages the docs link to that a benchmark run writes later (a new report): a stub until the file exists.
PENDING = {
    "budget.md": "# Budget view\n\nNot produced yet: `python benchmarks/run_benchmark.py` writes `results/budget.md`.\n",
}
# an inline Markdown link or image target: ](target) or ](target "title")
LINK = re.compile(r"(\]\()([^)\s]+)")
# a type cell of mkdocstrings' parameter tables whose text still carries Markdown marks
TYPE_CELL = re.compile(r"(<td>\s*<code>)([^<]*[`*][^<]*)(</code>\s*</td>)")


def on_files(files, config):
    for path in sorted((ROOT / RESULTS).iterdir()):
        if path.is_file() and path.suffix in PUBLISHED:
            files.append(File.generated(config, f"{RESULTS}/{path.name}", abs_src_path=str(path)))
    for name, stub in PENDING.items():
        if not (ROOT / RESULTS / name).is_file():
            files.append(File.generated(config, f"{RESULTS}/{name}", content=stub))
    return files


def on_page_markdown(markdown, page, config, files):
    folder = posixpath.dirname(page.file.src_uri)
    if page.file.src_uri.startswith(f"{RESULTS}/"):
        return markdown  # a results page: its links are the repository's own

    def rewrite(match: re.Match) -> str:
        target = match.group(2)
        if not target.startswith("../"):
            return match.group(0)
        in_repo = posixpath.normpath(posixpath.join("docs", folder, target))
        if not in_repo.startswith(f"{RESULTS}/"):
            return match.group(0)
        return match.group(1) + posixpath.relpath(in_repo, folder or ".")

    return LINK.sub(rewrite, markdown)


def on_page_content(html, page, config, files):
    if page.file.src_uri != "api.md":
        return html
    return TYPE_CELL.sub(lambda m: m.group(1) + m.group(2).replace("`", "").replace("*", "") + m.group(3), html)
