"""The documentation: every relative link in README.md and docs/*.md leads to a file that exists (and to a heading
of it, where it names one), the README links to every page of docs/, and the README stays short (250 lines)."""

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
README_MAX_LINES = 250

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where a link is not a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def anchors(text: str) -> set:
    """GitHub's anchors of a page's headings: lower case, punctuation other than '-' and '_' dropped, each space a
    '-'; a repeated heading gets -1, -2, ..."""
    seen, result = {}, set()
    for line in FENCE.sub("", text).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        result.add(slug if n == 0 else f"{slug}-{n}")
    return result


def links(path: str) -> list:
    with open(path) as f:
        return LINK.findall(prose(f.read()))


def broken_links(path: str) -> list:
    """The relative links of the page at `path` whose file or heading does not exist."""
    broken = []
    for target in links(path):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not os.path.exists(resolved):
            broken.append(f"{target} (no file {os.path.relpath(resolved, ROOT)})")
        elif anchor and resolved.endswith(".md"):
            with open(resolved) as f:
                if anchor not in anchors(f.read()):
                    broken.append(f"{target} (no heading #{anchor} in {os.path.relpath(resolved, ROOT)})")
    return broken


def test_there_are_pages_to_check():
    assert len(PAGES) >= 11 and all(os.path.exists(p) for p in PAGES)


@pytest.mark.parametrize("path", PAGES, ids=[os.path.relpath(p, ROOT) for p in PAGES])
def test_every_relative_link_resolves(path):
    assert links(path), f"{path} has no links"
    assert broken_links(path) == []


def test_the_check_finds_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "a.md").write_text("# A page\n\n## Two words: `code`\n\n[ok](#two-words-code) [ok](b.md#b)\n"
                                   "[no file](c.md) [no heading](b.md#c) `[in code](d.md)`\n")
    (tmp_path / "b.md").write_text("# B\n")
    assert broken_links(str(tmp_path / "a.md")) == ["c.md (no file " + os.path.relpath(str(tmp_path / "c.md"), ROOT)
                                                    + ")", "b.md#c (no heading #c in "
                                                    + os.path.relpath(str(tmp_path / "b.md"), ROOT) + ")"]


def test_anchors_follow_github():
    text = "# Fast paths: `--compile` and `--cudagraphs`\n## Results\n## Results\n## td7.py's update, 2.48 GFLOP\n"
    assert anchors(text) == {"fast-paths---compile-and---cudagraphs", "results", "results-1",
                             "td7pys-update-248-gflop"}


def test_the_readme_links_to_every_page_of_docs():
    linked = {os.path.normpath(target.partition("#")[0]) for target in links(PAGES[0])}
    missing = [os.path.relpath(p, ROOT) for p in PAGES[1:] if os.path.relpath(p, ROOT) not in linked]
    assert missing == []


def test_the_readme_is_at_most_250_lines():
    with open(PAGES[0]) as f:
        assert len(f.read().splitlines()) <= README_MAX_LINES
