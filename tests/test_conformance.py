"""The conformance examples of ../shared/conformance (SPEC.md's own examples) through the `charter replay` console
command, compared with their ``.expected.jsonl`` by that directory's ``compare.py``.

The directory is found beside the repository, or at ``$CHARTER_CONFORMANCE_DIR``. Missing, the test is skipped on
a developer machine but FAILS when ``$CI`` is set (or when ``$CHARTER_CONFORMANCE_DIR`` names a missing directory).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from schemas.outputs import OUTPUT_MODELS

ENV = "CHARTER_CONFORMANCE_DIR"


def conformance_dir() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser().resolve()
    return Path(__file__).resolve().parents[1].parent / "shared" / "conformance"


def cases() -> list[Path]:
    d = conformance_dir()
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob("*.jsonl") if not p.name.endswith(".expected.jsonl"))


def charter_command() -> list[str]:
    exe = shutil.which("charter") or str(Path(sys.executable).with_name("charter"))
    assert Path(exe).exists(), "the `charter` console command is not installed (pip install -e .)"
    return [exe]


def _missing(reason: str) -> None:
    if os.environ.get("CI") or os.environ.get(ENV):
        pytest.fail(f"conformance examples missing: {reason}")
    pytest.skip(f"conformance examples missing: {reason}")


@pytest.mark.parametrize("events", cases() or [None], ids=lambda p: "missing" if p is None else p.stem)
def test_conformance_example(events: Path | None, tmp_path: Path):
    d = conformance_dir()
    if events is None:
        _missing(f"no *.jsonl event files in {d}")
    expected = events.with_name(events.name.removesuffix(".jsonl") + ".expected.jsonl")
    compare = d / "compare.py"
    if not expected.is_file() or not compare.is_file():
        _missing(f"{expected.name} or compare.py not found in {d}")

    proc = subprocess.run([*charter_command(), "replay", "--no-progress", str(events)], capture_output=True,
                          timeout=120, check=False)
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
    assert cmp.returncode == 0, f"{events.name}: output differs from {expected.name}\n{cmp.stdout}{cmp.stderr}"


def test_compare_py_can_fail(tmp_path: Path):
    """compare.py really detects a difference (so a passing conformance test means something)."""
    d = conformance_dir()
    compare, found = d / "compare.py", cases()
    if not compare.is_file() or not found:
        _missing(f"compare.py or event files not found in {d}")
    expected = found[0].with_name(found[0].name.removesuffix(".jsonl") + ".expected.jsonl")
    lines = expected.read_bytes().splitlines()
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_bytes(b"\n".join(lines[:-1]) + b"\n")
    cmp = subprocess.run([sys.executable, str(compare), str(expected), str(truncated)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert cmp.returncode == 1
    assert "missing" in cmp.stdout


def test_missing_examples_fail_on_ci_and_skip_elsewhere(monkeypatch, tmp_path: Path):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception):
        _missing("test")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _missing("test")
    # an explicit directory that is missing or empty is an error too
    monkeypatch.setenv(ENV, str(tmp_path / "absent"))
    assert conformance_dir() == (tmp_path / "absent").resolve()
    assert cases() == []
    with pytest.raises(pytest.fail.Exception):
        _missing("test")
