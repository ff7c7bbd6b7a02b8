"""The README and the documentation site's pages: links that resolve, a short README, one quick start.

`make docs` (mkdocs build --strict, in CI) checks the same links on the built site; these run in `make test`
without the docs tools installed, so a broken link shows up with the other unit tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from markdown.extensions.toc import slugify

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
# pages docs/gen_pages.py writes at build time, and the file each is made from (None: nothing to link into)
GENERATED = {"reference.md": None, "benchmarks.md": ROOT / "benches" / "RESULTS.md"}
PAGES = sorted(DOCS.rglob("*.md"))


def without_code(text: str) -> str:
    """The Markdown outside fenced blocks and code spans, where a link is a link."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(page: Path) -> set[str]:
    """The ids Python-Markdown's toc extension (mkdocs) gives the page's headings."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    titles = re.findall(r"^#{1,6} (.+?)\s*$", text, flags=re.M)
    return {slugify(title.replace("`", ""), "-") for title in titles}


def links(page: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", without_code(page.read_text()))


@pytest.mark.parametrize("page", [ROOT / "README.md", *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_internal_link_resolves(page: Path):
    broken = []
    for link in links(page):
        if re.match(r"[a-z]+:", link):  # https:, mailto:
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        generated = target.parent == DOCS and target.name in GENERATED
        if not (target.is_file() or generated):
            broken.append(f"{link}: no such file")
            continue
        if anchor:
            source = GENERATED[target.name] if generated else target
            if source is None or anchor not in anchors(source):
                broken.append(f"{link}: no heading with that anchor")
    assert not broken, broken


def test_the_readme_stays_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines: move the detail to a page under docs/"


def test_the_quick_start_is_the_same_in_the_readme_and_on_the_site():
    def quick_start(text: str) -> str:
        return re.search(r"^## Quick start\n.*?^```bash\n(.*?)^```", text, flags=re.M | re.S).group(1)

    commands = quick_start((ROOT / "README.md").read_text())
    assert commands == quick_start((DOCS / "index.md").read_text())
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    assert [line.split()[:2] for line in commands.splitlines()] == [["make", "run"], ["make", "test"]]
    assert {"run", "test", "docs"} <= targets


class _IgnoringTags(yaml.SafeLoader):
    """mkdocs.yml names a Python function (`!!python/name:`), which a safe loader refuses; only the nav is read."""


_IgnoringTags.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    def paths(nav) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        items = nav.values() if isinstance(nav, dict) else nav
        return [p for item in items for p in paths(item)]

    nav = paths(yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_IgnoringTags)["nav"])
    assert len(nav) == len(set(nav))
    assert set(nav) == {str(p.relative_to(DOCS)) for p in PAGES} | set(GENERATED)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_lists_are_laid_out_as_the_site_reads_them(page: Path):
    """Python-Markdown (mkdocs) keeps a block in a list item only at 4 spaces; GitHub also takes 2, so README-style
    text pasted in renders outside its item on the site, and `mkdocs build --strict` does not warn."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)  # top-level fences only
    lines = text.splitlines()
    shallow = [line for i, line in enumerate(lines[1:], 1) if not lines[i - 1].strip() and re.match(r"^ {1,3}\S", line)]
    assert not shallow, f"indent these list items' blocks by 4 spaces: {shallow}"
    # and a list needs a blank line before it, or it stays part of the paragraph above
    glued = [line for i, line in enumerate(lines[1:], 1)
             if re.match(r"^(- |\d+\. )", line) and re.match(r"^[^\s|>-]", lines[i - 1]) and not re.match(r"^\d+\. ", lines[i - 1])]
    assert not glued, f"put a blank line before these lists: {glued}"


def test_the_reference_lists_every_experiments_own_settings():
    """An experiment's `study.<key>.*` settings live in its registered node, not in AgoraConfig's default study: the
    generated reference walks each of them too (it once showed only `study.kind` for converted experiments)."""
    import runpy

    from sim.experiments.registry import experiments

    sections = runpy.run_path(str(ROOT / "docs" / "gen_pages.py"), run_name="gen_pages")["experiment_sections"]()
    walked = {name: (prefix, cls) for name, prefix, cls in sections}
    for name, exp in experiments().items():
        if exp.config is not None:
            assert walked.get(name) == (f"study.{exp.key}.", exp.config), name
    assert {"overton", "pluralism"} <= set(walked)
