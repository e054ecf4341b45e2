"""Every relative link in the repository's documentation leads somewhere that exists.

A newcomer follows the README into ``docs/`` and from there into the code; a link to a page
that was renamed, moved or never written (or to a file outside the repository, which no clone
has) is a dead end. Checked here, with one list of every broken link on failure:

* every relative link and image of every Markdown file (inline ``[text](target)`` and reference
  definitions ``[ref]: target``; code blocks and code spans are not links) resolves to a file or
  directory inside the repository;
* an anchor (``<page>.md#section``, or ``#section`` within the page) matches a heading of the
  target, slugged the way GitHub renders it (or an explicit HTML ``id``/``name``);
* every relative ``docs/...`` or ``*.md`` path mentioned in a comment (docstrings included) of
  the Python, YAML, Makefile, Dockerfile and Helm chart files resolves too, relative to the
  repository root or to the mentioning file.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
import unicodedata
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Directories never searched: tool caches, installed dependencies and build output (dot
#: directories such as .git, .venv, .pytest_cache are skipped as a rule).
SKIP_DIRS = frozenset({"node_modules", "build", "dist", "__pycache__"})

#: Mentions known to be broken in files another change is rewriting (file, path mentioned):
#: tolerated so that this test can land first; test_known_broken_mentions_are_still_there
#: fails once an entry is fixed, so the list only shrinks.
KNOWN_BROKEN = frozenset({("connector/statetopic.py", "DESIGN.md")})

#: Link targets written on a parallel branch of the same change; each entry is checked like any
#: other link as soon as the file exists. Remove an entry once its file has landed.
PENDING: frozenset[str] = frozenset()

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?:.|\n)*?(?<!`)\1(?!`)")
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^()\s>]+(?:\([^()\s]*\)[^()\s>]*)*)>?"
)
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
HTML_ID = re.compile(r"""<[a-zA-Z][^>]*\s(?:id|name)\s*=\s*["']([^"']+)["']""")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
#: A path to a Markdown file or into docs/, as written in a comment: not part of a URL, a glob
#: or a placeholder (``docs/<venue>.md``), optionally with an anchor.
MENTION = re.compile(
    r"(?<![\w./<>{}$*@:-])"
    r"((?:\.\.?/)*(?:[\w.-]+/)*[\w-][\w.-]*\.md|(?:\.\./)*docs/[\w./-]*[\w/])"
    r"(?![\w<>{}*/-])"
)


def repo_files(*patterns: str) -> Iterator[Path]:
    """Files under the repository matching any of ``patterns`` (names or globs), outside the
    skipped directories."""
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT).parts
        if any(p.startswith(".") or p in SKIP_DIRS or p.endswith(".egg-info") for p in rel[:-1]):
            continue
        if path.is_file() and any(path.match(p) for p in patterns):
            yield path


def strip_code(text: str) -> str:
    """``text`` with fenced code blocks blanked out and code spans removed (line count kept)."""
    return CODE_SPAN.sub("", strip_fences(text))


def strip_fences(text: str) -> str:
    """``text`` with the lines of fenced code blocks blanked out (line count kept)."""
    out, fence = [], ""
    for line in text.split("\n"):
        match = FENCE.match(line)
        if fence:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = ""
            out.append("")
        elif match:
            fence = match.group(1)
            out.append("")
        else:
            out.append(line)
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text, lower-cased, with everything but
    letters, digits, marks, ``_``, ``-`` and spaces removed, and each space made a ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"(\*{1,3})(\S(?:.*?\S)?)\1", r"\2", text)  # emphasis markers; _ only
    text = re.sub(r"(?<!\w)(_{1,3})(\S(?:.*?\S)?)\1(?!\w)", r"\2", text)  # around words
    kept = (ch for ch in text.lower() if ch in "-_ " or unicodedata.category(ch)[0] in "LNM")
    return "".join(kept).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every anchor GitHub gives ``path``: heading slugs (repeats numbered ``-1``, ``-2``, as
    GitHub does) and explicit HTML ids."""
    text = path.read_text(encoding="utf-8")
    found: set[str] = set(HTML_ID.findall(text))
    seen: dict[str, int] = {}
    for line in strip_fences(text).split("\n"):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def inside_repository(path: Path) -> bool:
    return path == ROOT or ROOT in path.parents


def check_target(source: Path, target: str, bases: tuple[Path, ...]) -> str | None:
    """Why the relative link ``target`` written in ``source`` is broken, or None if it is not.
    Tried against each of ``bases`` in turn (resolved, so ``..`` cannot leave unnoticed)."""
    file_part, _, anchor = target.partition("#")
    reasons = []
    for base in bases:
        resolved = (base / file_part).resolve() if file_part else source
        if not inside_repository(resolved):
            reasons.append("outside the repository")
            continue
        rel = resolved.relative_to(ROOT).as_posix()
        if not resolved.exists():
            if rel in PENDING:
                return None
            reasons.append("no such file")
            continue
        if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            reasons.append(f"no heading #{anchor} in {rel}")
            continue
        return None
    return reasons[0]


def markdown_links(path: Path) -> Iterator[tuple[int, str]]:
    """(line, target) of every relative link of a Markdown file."""
    text = strip_code(path.read_text(encoding="utf-8"))
    for pattern in (INLINE_LINK, REFERENCE_DEF):
        for match in pattern.finditer(text):
            target = match.group(1)
            if not SCHEME.match(target) and not target.startswith("//"):
                yield text.count("\n", 0, match.start(1)) + 1, target


def python_comments(path: Path) -> Iterator[tuple[int, str]]:
    """(first line, text) of every comment and docstring of a Python file."""
    source = path.read_text(encoding="utf-8")
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    yield body[0].lineno, body[0].value.value


def hash_comments(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of every ``#`` comment of a YAML, Makefile, Dockerfile or shell file (from
    the first ``#`` that starts the line or follows a space, outside quotes as YAML has it)."""
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        match = re.search(r"(?:^|\s)#(.*)", line)
        if match:
            yield number, match.group(1)


def chart_comments(path: Path) -> Iterator[tuple[int, str]]:
    """Comments of a Helm template (``{{/* ... */}}``); NOTES.txt is text for the user, whole."""
    text = path.read_text(encoding="utf-8")
    if path.name == "NOTES.txt":
        yield 1, text
        return
    for match in re.finditer(r"\{\{-?\s*/\*(.*?)\*/\s*-?\}\}", text, re.S):
        yield text.count("\n", 0, match.start()) + 1, match.group(1)


def comment_mentions(path: Path) -> Iterator[tuple[int, str]]:
    """(line, path) of every relative docs/ or Markdown path mentioned in ``path``'s comments."""
    if path.suffix == ".py":
        comments = python_comments(path)
    elif path.suffix in (".tpl", ".txt"):
        comments = chart_comments(path)
    else:
        comments = hash_comments(path)
    for line, text in comments:
        for match in MENTION.finditer(text):
            yield line + text.count("\n", 0, match.start()), match.group(1).rstrip(".")


def broken_links() -> list[str]:
    broken = []
    for path in repo_files("*.md"):
        for line, target in markdown_links(path):
            reason = check_target(path, target, (path.parent,))
            if reason:
                broken.append(f"{path.relative_to(ROOT)}:{line}: {target} ({reason})")
    commented = repo_files(
        "*.py", "*.yaml", "*.yml", "Makefile", "Dockerfile", "*.tpl", "NOTES.txt"
    )
    for path in commented:
        for line, target in comment_mentions(path):
            if (path.relative_to(ROOT).as_posix(), target) in KNOWN_BROKEN:
                continue
            reason = check_target(path, target, (ROOT, path.parent))
            if reason:
                broken.append(f"{path.relative_to(ROOT)}:{line}: {target} ({reason})")
    return broken


def test_every_relative_link_resolves_inside_the_repository() -> None:
    broken = broken_links()
    assert not broken, f"{len(broken)} broken link(s):\n" + "\n".join(broken)


def test_known_broken_mentions_are_still_there() -> None:
    for name, target in sorted(KNOWN_BROKEN):
        path = ROOT / name
        mentioned = path.exists() and target in {t for _, t in comment_mentions(path)}
        assert mentioned and check_target(path, target, (ROOT, path.parent)), (
            f"{name} no longer mentions a broken {target}: remove it from KNOWN_BROKEN"
        )


# --- the checker itself ----------------------------------------------------------------------


def test_slugs_follow_github() -> None:
    assert slug("5. Topic settings") == "5-topic-settings"
    assert slug("Exchange order connector — design contract") == (
        "exchange-order-connector--design-contract"
    )
    assert slug("`futures-open-orders` over WebSocket: exact shapes") == (
        "futures-open-orders-over-websocket-exact-shapes"
    )
    assert slug("Fees: `openFee` sign") == "fees-openfee-sign"
    assert slug("The **embedded** broker (development only)") == (
        "the-embedded-broker-development-only"
    )
    assert (
        slug("CONNECTOR_TOPIC_STATE and [the docs](x.md)") == "connector_topic_state-and-the-docs"
    )


def test_repeated_headings_are_numbered(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Notes\n## Sources\n```\n# not a heading\n```\n### Sources\n")
    assert anchors(page) == {"notes", "sources", "sources-1"}


def test_code_is_not_a_link() -> None:
    text = "see [a](x.md) and `[b](y.md)`\n```md\n[c](z.md)\n```\n[d]: w.md\n"
    assert strip_code(text).count("\n") == text.count("\n")
    found = [m.group(1) for p in (INLINE_LINK, REFERENCE_DEF) for m in p.finditer(strip_code(text))]
    assert sorted(found) == ["w.md", "x.md"]


def test_broken_targets_are_reported() -> None:
    readme = ROOT / "README.md"
    assert check_target(readme, "docs/contract.md", (ROOT,)) is None
    assert check_target(readme, "docs/no-such-page.md", (ROOT,)) == "no such file"
    assert check_target(readme, "../../shared/DESIGN.md", (ROOT,)) == "outside the repository"
    assert check_target(readme, "docs/contract.md#no-such-heading", (ROOT,)) == (
        "no heading #no-such-heading in docs/contract.md"
    )
    assert check_target(readme, "#quick-start", (ROOT,)) is None


def test_mentions_in_comments_are_found() -> None:
    text = (
        "see docs/state-topic.md, README.md and ../docs/x.md; not https://h/a/README.md,"
        " docs/<venue>.md or *.md"
    )
    assert [m.group(1) for m in MENTION.finditer(text)] == [
        "docs/state-topic.md",
        "README.md",
        "../docs/x.md",
    ]
