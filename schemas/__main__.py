"""``python -m schemas [--check] [--out DIR]``: one JSON Schema file per topic, ``<topic>.schema.json``.

Inputs come from ``schemas.inputs.json_schema`` (SPEC section 2), outputs from ``OUTPUT_MODELS`` (section 3).
Files are written with sorted keys, an indent of 2 and a trailing newline, so they diff cleanly. ``--check``
writes nothing and exits 1 listing the stale (missing, different or unexpected) files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schemas.inputs import INPUT_TOPICS, json_schema
from schemas.outputs import OUTPUT_MODELS
from streams.errors import OneLineArgumentParser, UserFacingError

DEFAULT_DIR = Path(__file__).resolve().parent / "json"
SUFFIX = ".schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def topic_schemas() -> dict[str, dict]:
    """topic -> its JSON Schema (inputs and outputs)."""
    out: dict[str, dict] = {}
    for topic in INPUT_TOPICS:
        out[topic] = {"$schema": DIALECT, "title": topic, **json_schema(topic)}
    for topic, model in OUTPUT_MODELS.items():
        schema = model.model_json_schema()
        out[topic] = {"$schema": DIALECT, **schema, "title": schema.get("title", topic)}
    for topic, schema in out.items():
        schema["description"] = (schema.get("description") or "").strip() or f"A message value of topic {topic}"
        schema["x-topic"] = topic
        schema["x-direction"] = "input" if topic in INPUT_TOPICS else "output"
    return out


def render(schema: dict) -> str:
    return json.dumps(schema, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def expected_files() -> dict[str, str]:
    """file name -> exact content."""
    return {f"{topic}{SUFFIX}": render(schema) for topic, schema in topic_schemas().items()}


def stale_files(out_dir: Path) -> list[str]:
    """Names of files in ``out_dir`` that are missing, differ from the models, or belong to no topic."""
    want = expected_files()
    stale = []
    for name, text in sorted(want.items()):
        path = out_dir / name
        if not path.is_file():
            stale.append(f"{name} (missing)")
        elif path.read_text(encoding="utf-8") != text:
            stale.append(f"{name} (differs)")
    stale += [f"{p.name} (no such topic)" for p in sorted(out_dir.glob(f"*{SUFFIX}")) if p.name not in want]
    return stale


def write(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in expected_files().items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog="python -m schemas", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 listing stale files")
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help=f"output directory (default {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.out)
        if stale:
            print(f"stale JSON Schema files in {args.out} (run `python -m schemas`):", file=sys.stderr)
            for s in stale:
                print(f"  {s}", file=sys.stderr)
            return 1
        print(f"{len(expected_files())} JSON Schema files up to date in {args.out}")
        return 0
    try:
        written = write(args.out)
    except OSError as e:
        error = UserFacingError(f"cannot write {e.filename or args.out}: {e.strerror or e}")
        error.show()
        return error.exit_code
    for path in written:
        print(f"wrote {path}")
    print(f"{len(expected_files())} JSON Schema files in {args.out} ({len(written)} updated)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
