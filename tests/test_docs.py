"""The design lives in the project: every section the code cites exists in
docs/ARCHITECTURE.md, and no module cites a document the repository does not have."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"


def _sources() -> dict[Path, str]:
    return {p: p.read_text() for p in sorted((ROOT / "raymia").rglob("*.py"))}


def test_every_cited_section_of_the_architecture_exists():
    sections = set(re.findall(r"^## (.+)$", ARCHITECTURE.read_text(), re.M))
    cited = {
        (path.relative_to(ROOT), section)
        for path, text in _sources().items()
        for section in re.findall(r'ARCHITECTURE\.md,\s+"([^"]+)"', text)
    }
    assert len(cited) >= 4
    missing = [f"{path}: {section}" for path, section in cited if section not in sections]
    assert not missing, missing


def test_no_module_cites_a_missing_document():
    for path, text in _sources().items():
        for doc in re.findall(r"\b((?:docs/)?[A-Z][A-Z_]*\.md)\b", text):
            assert (ROOT / doc).exists() or (ROOT / "docs" / doc).exists(), f"{path}: {doc}"
