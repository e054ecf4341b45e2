"""The README is a newcomer's guide (issue 23): short, the quick start first, and true.

What it promises here is checked against the code where the code decides it (the topics the
worker creates come from the one topic plan, connector/topicplan.py); links are checked by
tests/unit/test_links.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from connector.settings import Settings
from connector.topicplan import topic_plan

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_is_a_guide_of_at_most_about_300_lines() -> None:
    assert len(README.splitlines()) <= 300


def test_the_quick_start_is_two_commands_near_the_top() -> None:
    top = "\n".join(README.splitlines()[:40])
    assert re.search(r"^make demo\b", top, re.M) and re.search(r"^make test\b", top, re.M)


def test_the_kafka_tools_that_work_with_the_embedded_broker_are_named_near_the_top() -> None:
    top = "\n".join(README.splitlines()[:60])
    assert "kcat" in top and "confluent-kafka" in top and "connector tail" in top


def test_no_document_says_the_worker_never_creates_topics() -> None:
    """The worker creates its state and internal topics (the plan says which); no page, nor
    the Helm NOTES, may say it creates none."""
    said = re.compile(r"(never|does not|doesn't) creates? (any )?topics", re.I)
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted((ROOT / "helm").rglob("NOTES.txt"))]  # fmt: skip
    wrong = [str(p.relative_to(ROOT)) for p in pages if said.search(p.read_text("utf-8"))]
    assert not wrong
    created = [t for t in topic_plan(Settings()) if t.created_by == "worker"]
    assert created, "the topic plan says the worker creates its state and internal topics"
