"""The docs and messages speak of the project alone and point only at files that are in the repository."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["README.md", "docs", "pdr", "backbones", "adapters", "tools", "tests", "configs", "csrc", "Makefile"]
SUFFIXES = {".md", ".py", ".yaml", ".cu", ".cpp", ".h", ""}


def files():
    for name in SOURCES:
        path = REPO / name
        for f in ([path] if path.is_file() else sorted(path.rglob("*"))):
            if f.is_file() and f.suffix in SUFFIXES and "__pycache__" not in f.parts and f.name != "test_docs.py":
                yield f


MD_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
DOCS_NAME = re.compile(r"(?<![\w/.-])docs/[\w.-]+\.md\b")
BARE_NAME = re.compile(r"`([\w.-]+\.md)`")


def test_markdown_links_point_at_files_of_the_repository():
    missing = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in MD_LINK.findall(doc.read_text()):
            if not re.match(r"[a-z]+://", target) and not (doc.parent / target).exists():
                missing.append(f"{doc.relative_to(REPO)} -> {target}")
    assert not missing


def test_every_named_doc_exists():
    """``docs/x.md`` named anywhere, and `x.md` named in a doc, is a file of the repository."""
    missing = []
    for f in files():
        text = f.read_text(errors="replace")
        names = DOCS_NAME.findall(text) + ([f"docs/{n}" for n in BARE_NAME.findall(text)] if f.parent.name == "docs" else [])
        missing += [f"{f.relative_to(REPO)}: {name}" for name in names if not (REPO / name).exists()]
    assert not missing


@pytest.mark.parametrize("pattern", [r"/work/", r"/home/\w", r"\bdevice tool\b", r"\bthe lead\b", r"\bsessions?\b"])
def test_no_machine_paths_or_words_from_outside_the_project(pattern):
    found = [f"{f.relative_to(REPO)}:{i + 1}" for f in files()
             for i, line in enumerate(f.read_text(errors="replace").splitlines()) if re.search(pattern, line, re.I)]
    assert not found
