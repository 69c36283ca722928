"""Every relative link in README.md, CHANGELOG.md, docs/*.md and the model cards points at a file that exists,
and every ``#anchor`` names a heading (or an explicit ``id``/``name``) of its target, as GitHub renders it.

Markdown is parsed with markdown-it-py (CommonMark), so links inside code spans and fenced blocks are not
links; headings get GitHub's slugs (see :func:`github_slug`). External links (``http(s):``, ``mailto:``) are
not fetched: the appliance and its CI are offline.
"""
from __future__ import annotations

import re
import sys
import unicodedata
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

markdown_it = pytest.importorskip("markdown_it")

REPO = Path(__file__).resolve().parents[1]


def documents():
    docs = [REPO / "README.md", REPO / "CHANGELOG.md"]
    docs += sorted((REPO / "docs").glob("*.md")) + sorted((REPO / "models" / "released").glob("*/MODEL_CARD.md"))
    return [d for d in docs if d.is_file()]


def github_slug(text: str) -> str:
    """GitHub's heading anchor: the heading's text, lower-cased, every character that is not a letter, digit,
    ``_``, ``-`` or space removed, spaces turned into ``-`` (github-slugger; repeated slugs get ``-1``, ``-2``
    in :func:`anchors`)."""
    text = text.strip().lower()
    kept = "".join(ch for ch in text if ch in "-_ " or unicodedata.category(ch)[0] in "LNM")
    return kept.replace(" ", "-")


def _inline_text(token) -> str:
    """The rendered text of an inline token: code spans keep their content, links their text, images their alt."""
    out = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type == "image":
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append(" ")
        elif child.type == "html_inline":
            continue
    return "".join(out)


@lru_cache(maxsize=None)
def parse(path: Path):
    md = markdown_it.MarkdownIt("commonmark").enable("table")
    return md.parse(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def anchors(path: Path) -> frozenset:
    """Every anchor of a Markdown file: heading slugs (with GitHub's ``-N`` suffixes) and HTML ``id``/``name``."""
    tokens = parse(path)
    seen, out = {}, set()
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            slug = github_slug(_inline_text(tokens[i + 1]))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    text = path.read_text(encoding="utf-8")
    out |= set(re.findall(r"<[^>]+\b(?:id|name)=[\"']([^\"']+)[\"']", text))
    return frozenset(out)


def links(path: Path):
    """(line, target) of every link and image of a Markdown file (inline, reference-style and HTML href/src)."""
    out = []
    for tok in parse(path):
        line = tok.map[0] + 1 if tok.map else 0
        if tok.type == "inline":
            stack = list(tok.children or [])
            while stack:
                child = stack.pop(0)
                if child.type == "link_open":
                    out.append((line, child.attrs.get("href", "")))
                elif child.type == "image":
                    out.append((line, child.attrs.get("src", "")))
                elif child.type == "html_inline":
                    out += [(line, m) for m in re.findall(r"\b(?:href|src)=[\"']([^\"']+)[\"']", child.content)]
                stack = list(child.children or []) + stack
        elif tok.type == "html_block":
            out += [(line, m) for m in re.findall(r"\b(?:href|src)=[\"']([^\"']+)[\"']", tok.content)]
    return out


def broken_links(path: Path):
    """Messages for the relative links of ``path`` whose file or anchor does not exist."""
    problems = []
    for line, target in links(path):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc or target.startswith("//"):
            continue  # http(s), mailto: not fetched here
        where = f"{path.relative_to(REPO)}:{line}: {target}"
        dest = (path.parent / unquote(parts.path)).resolve() if parts.path else path
        if not dest.exists():
            problems.append(f"{where}: no such file {dest.relative_to(REPO) if REPO in dest.parents else dest}")
            continue
        if REPO not in dest.parents and dest != REPO:
            problems.append(f"{where}: points outside the repository")
            continue
        if parts.fragment and dest.suffix.lower() == ".md":
            frag = unquote(parts.fragment)
            if frag not in anchors(dest):
                near = sorted(a for a in anchors(dest) if frag.split("-")[0] in a)[:5]
                problems.append(f"{where}: no anchor #{frag} in {dest.relative_to(REPO)} (near: {near})")
    return problems


def test_github_slugs():
    assert github_slug("Cascade figures with the default detector ultralight_mask 1.1.0") == \
        "cascade-figures-with-the-default-detector-ultralight_mask-110"
    assert github_slug("Two commands: set up, run (and test) — on Debian") == "two-commands-set-up-run-and-test--on-debian"
    assert github_slug("Détecteur: 640×368") == "détecteur-640368"


def test_the_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# Title\n\n## Same\n\n## Same\n\n<a id=\"here\"></a>\n", encoding="utf-8")
    doc = tmp_path / "README.md"
    doc.write_text("[ok](docs/b.md#title) [ok2](docs/b.md#same-1) [ok3](docs/b.md#here) [self](#top)\n\n"
                   "# Top\n\n`[not a link](nowhere.md)`\n\n```\n[nor this](nowhere.md)\n```\n\n"
                   "[gone](docs/c.md) [bad anchor](docs/b.md#same-2) ![img](docs/x.png) [web](https://example.org/x)\n",
                   encoding="utf-8")
    got = broken_links(doc)
    assert len(got) == 3, got
    assert "docs/c.md" in got[0] and "#same-2" in got[1] and "docs/x.png" in got[2]


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_and_anchors_exist(doc):
    problems = broken_links(doc)
    assert not problems, "\n".join(problems)
