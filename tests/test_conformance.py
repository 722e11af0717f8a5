"""The worked examples of ../shared/conformance/v2 (the current SPEC.md) through the `charter replay` console command,
each with the charter its ``manifest.json`` names, compared with its ``.expected.jsonl`` by ``compare.py``.

The directory is found beside the repository, or at ``$CHARTER_CONFORMANCE_DIR`` (the folder holding ``v2/``).
A clone without it skips these tests with a reason: the project's own rule tests (tests/test_rules.py,
tests/test_ofcom.py) cover the same ground. Naming a missing directory in ``$CHARTER_CONFORMANCE_DIR`` is an error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from schemas.outputs import OUTPUT_MODELS

ENV = "CHARTER_CONFORMANCE_DIR"

# Requirements of the manifest this code does not meet yet, by prefix, with the reason a case needing one is skipped.
# Whoever implements one removes its line here, and its cases run.
NOT_IMPLEMENTED: dict[str, str] = {}
# Cases also run with a shipped charter instead of the file beside them: (case, shipped charter name).
SHIPPED = [("ofcom.jsonl", "ofcom-2026"), ("prevention.jsonl", "alice-2007")]


def conformance_dir() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser().resolve()
    return Path(__file__).resolve().parents[1].parent / "shared" / "conformance"


def manifest() -> dict[str, dict]:
    path = conformance_dir() / "v2" / "manifest.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def cases() -> list[tuple[str, str]]:
    """(case file, charter argument): the manifest's charter file, and the shipped charters of ``SHIPPED``."""
    m = manifest()
    out = [(name, entry["charter"]) for name, entry in sorted(m.items())]
    out += [(name, shipped) for name, shipped in SHIPPED if name in m]
    return out


def _missing(reason: str) -> None:
    if os.environ.get(ENV):
        pytest.fail(f"{ENV} is set but {reason}")
    pytest.skip(f"conformance examples absent ({reason}): a clone without ../shared relies on the project's own "
                "rule tests")


def _unmet(name: str) -> str | None:
    for need in manifest().get(name, {}).get("requires", []):
        for prefix, reason in NOT_IMPLEMENTED.items():
            if need == prefix or need.startswith(prefix + ":") or need.startswith(prefix + " "):
                return reason
    return None


def charter_command() -> list[str]:
    exe = shutil.which("charter") or str(Path(sys.executable).with_name("charter"))
    assert Path(exe).exists(), "the `charter` console command is not installed (pip install -e .)"
    return [exe]


def _env() -> dict[str, str]:
    # the console script imports this checkout's package (a worktree's, not the editable install's)
    root = str(Path(__file__).resolve().parents[1])
    return dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _params() -> list:
    found = cases()
    if not found:
        return [pytest.param(None, None, id="missing")]
    return [pytest.param(case, charter, id=f"{case.removesuffix('.jsonl')}/"
                         + (charter if charter.endswith((".yaml", ".yml")) else f"shipped:{charter}"))
            for case, charter in found]


@pytest.mark.parametrize(("case", "charter"), _params())
def test_conformance_example(case: str | None, charter: str | None, tmp_path: Path):
    d = conformance_dir()
    v2 = d / "v2"
    if case is None:
        _missing(f"no v2/manifest.json in {d}")
    reason = _unmet(case)
    if reason:
        pytest.skip(f"{case}: {reason}")
    events = v2 / case
    expected = v2 / (case.removesuffix(".jsonl") + ".expected.jsonl")
    compare = d / "compare.py"
    for needed in (events, expected, compare):
        if not needed.is_file():
            _missing(f"{needed} not found")
    charter_arg = str(v2 / charter) if charter.endswith((".yaml", ".yml")) else charter

    proc = subprocess.run([*charter_command(), "replay", "--no-progress", "--charter", charter_arg, str(events)],
                          capture_output=True, timeout=120, check=False, env=_env())
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    actual = tmp_path / f"{events.stem}.actual.jsonl"
    actual.write_bytes(proc.stdout)

    # every record is on the wire format and valid for its topic
    for raw in proc.stdout.splitlines():
        rec = orjson.loads(raw)
        assert set(rec) == {"topic", "key", "value"}
        OUTPUT_MODELS[rec["topic"]].model_validate(rec["value"])

    cmp = subprocess.run([sys.executable, str(compare), str(expected), str(actual)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert cmp.returncode == 0, f"{case}: output differs from {expected.name}\n{cmp.stdout}{cmp.stderr}"


def test_compare_py_can_fail(tmp_path: Path):
    """compare.py really detects a difference (so a passing conformance test means something)."""
    d = conformance_dir()
    compare, found = d / "compare.py", cases()
    if not compare.is_file() or not found:
        _missing(f"compare.py or v2/manifest.json not found in {d}")
    expected = d / "v2" / (found[0][0].removesuffix(".jsonl") + ".expected.jsonl")
    lines = expected.read_bytes().splitlines()
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_bytes(b"\n".join(lines[:-1]) + b"\n")
    cmp = subprocess.run([sys.executable, str(compare), str(expected), str(truncated)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert cmp.returncode == 1
    assert "missing" in cmp.stdout


def test_absent_examples_skip_with_a_reason_even_on_ci(monkeypatch, tmp_path: Path):
    monkeypatch.delenv(ENV, raising=False)
    for ci in ("1", None):
        if ci is None:
            monkeypatch.delenv("CI", raising=False)
        else:
            monkeypatch.setenv("CI", ci)
        with pytest.raises(pytest.skip.Exception, match="project's own rule tests"):
            _missing("test")
    # a directory named explicitly that is missing is an error: whoever set the variable wants these run
    monkeypatch.setenv(ENV, str(tmp_path / "absent"))
    assert conformance_dir() == (tmp_path / "absent").resolve()
    assert cases() == []
    with pytest.raises(pytest.fail.Exception):
        _missing("test")


def test_a_case_needing_an_unimplemented_section_is_skipped_with_its_reason(monkeypatch):
    monkeypatch.setitem(NOT_IMPLEMENTED, "section 10", "SPEC section 10 is not implemented yet")
    monkeypatch.setattr(sys.modules[__name__], "manifest", lambda: {
        "x.jsonl": {"charter": "c.yaml", "requires": ["section 10"]},
        "y.jsonl": {"charter": "c.yaml", "requires": ["section 4 rule 4: nothing after a cancellation"]},
        "z.jsonl": {"charter": "c.yaml", "requires": ["section 100"]},
    })
    assert _unmet("x.jsonl") == NOT_IMPLEMENTED["section 10"]
    assert _unmet("y.jsonl") is None
    assert _unmet("z.jsonl") is None  # "section 100" is not "section 10"
