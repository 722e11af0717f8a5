"""docs/contract.md is the contract a clone carries: it names every topic, every field and enum value of every model,
the shipped charters as they are, and the README points to it (never to a folder beside the repository)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.__main__ import topic_schemas
from schemas.inputs import INPUT_TOPICS
from streams.settings import Settings
from streams.topics import topic_plan

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "docs" / "contract.md"
COMMON_INPUT_FIELDS = {"event_id", "occurred_at", "customer_id"}


def text() -> str:
    return CONTRACT.read_text(encoding="utf-8")


def section(title: str, level: str = "###") -> str:
    """The body of the heading ``title`` up to the next heading of the same or a higher level."""
    body = text().split(f"\n{level} {title}\n", 1)
    assert len(body) == 2, f"no heading {level} {title}"
    return re.split(rf"\n#{{2,{len(level)}}} ", body[1], maxsplit=1)[0]


def named(body: str) -> set[str]:
    return set(re.findall(r"`([^`\s]+)`", body))


def properties(schema: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(property names, enum and const string values) of a schema and its $defs."""
    props: set[str] = set()
    values: set[str] = set()

    def walk(node: Any, key: str | None = None) -> None:
        if isinstance(node, dict):
            if key == "properties":
                props.update(node)
            for k, v in node.items():
                if k in ("enum", "const"):
                    values.update(x for x in (v if isinstance(v, list) else [v]) if isinstance(x, str))
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    return props, values


@pytest.mark.parametrize("topic", sorted(topic_schemas()))
def test_every_field_and_value_of_a_topic_is_in_its_section(topic: str):
    props, values = properties(topic_schemas()[topic])
    mentioned = named(section(f"`{topic}`"))
    if topic in INPUT_TOPICS:
        mentioned |= COMMON_INPUT_FIELDS
    assert props - mentioned == set(), f"fields of {topic} missing from docs/contract.md"
    assert values - mentioned == set(), f"values of {topic} missing from docs/contract.md"


def test_every_topic_of_a_deployment_is_listed():
    settings = Settings.model_construct()
    topics = named(section("2. Topics", "##"))
    for name in topic_plan(settings):
        assert name.replace(settings.app_id, "{app_id}") in topics, name


def _within(small: Any, big: Any) -> bool:
    """Every setting of ``small`` is in ``big`` with the same value (``big`` may have more)."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _within(v, big[k]) for k, v in small.items())
    return small == big


@pytest.mark.parametrize("name", ["alice-2007", "ofcom-2026"])
def test_the_shipped_charters_are_as_the_contract_shows(name: str):
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text(), re.S)]
    [shown] = [b for b in blocks if b.get("name") == name]
    shipped = yaml.safe_load((ROOT / "streams" / "charters" / f"{name}.yaml").read_text(encoding="utf-8"))
    assert _within(shipped, shown), f"streams/charters/{name}.yaml has settings docs/contract.md does not show"


def test_the_readme_links_the_contract_and_nothing_outside_the_repository():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/contract.md)" in readme
    assert "../" not in readme
    for doc in (ROOT / "README.md", CONTRACT):
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (doc.parent / target).resolve().is_file(), f"{doc.name}: broken link {target}"
