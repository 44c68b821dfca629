"""Render the event catalogue as Markdown (the reference section of telemetry_schema/README.md).

    python -m telemetry_schema.docs            # print the section
    python -m telemetry_schema.docs --write    # rewrite it in README.md between the markers
"""

from __future__ import annotations

import sys
from pathlib import Path

from telemetry_schema.events import EVENT_TYPES, field_docs
from telemetry_schema.schema import ENVELOPE, SCHEMA_VERSION, SLOT_ENVELOPE, kind_schema

BEGIN, END = "<!-- catalogue:begin -->", "<!-- catalogue:end -->"
README = Path(__file__).with_name("README.md")


def render() -> str:
    lines = [f"Schema version **{SCHEMA_VERSION}**.", "", "### Envelope (the first columns of every kind)", "",
             "| column | Arrow type | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | `{dtype}` | {doc} |" for name, dtype, doc in ENVELOPE + SLOT_ENVELOPE]
    for cls in EVENT_TYPES:
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        schema = kind_schema(cls.KIND)
        payload = {name for name, _ in field_docs(cls)}
        envelope = ", ".join(f"`{n}`" for n in schema.names if n not in payload)
        lines += ["", f"### `{cls.KIND}` — {summary}", "",
                  f"Stream `events/{cls.KIND}.rank<R>.arrows`; envelope {envelope}.", "",
                  "| field | Arrow type | meaning |", "|---|---|---|"]
        lines += [f"| `{name}` | `{schema.field(name).type}` | {doc} |" for name, doc in field_docs(cls)]
    return "\n".join(lines)


def updated_readme(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{render()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--write"]:
        README.write_text(updated_readme(README.read_text()))
        return 0
    sys.stdout.write(render() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
