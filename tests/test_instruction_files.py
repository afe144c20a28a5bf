"""Hand-written instruction files → rule memories, and back (export index, --format claude-md)."""

from __future__ import annotations

import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dreaming.instructions_file import heading_kind, rule_key_parts, split_instruction_file
from dreaming.models import Memory, memories_from_table
from dreaming.stores import INDEX_MARKER, StoreService, read_memory_dir, render_memory_file, split_front_matter

CLAUDE_MD = """\
# CLAUDE.md

This file provides guidance to Claude Code when working with code in this repository.

## Commands

- `make dev` starts the API on port 8000 with auto-reload.
- Deploy with `make deploy` (staging first, then `make deploy ENV=prod`).
- Database migrations:
  - `alembic upgrade head` applies them
  - `alembic revision --autogenerate -m "msg"` creates one

## Testing

Run the suite with:

```bash
uv run pytest -q -p no:warnings
```

- Never mock the database in integration tests; use the `db` fixture from `tests/conftest.py`.

## Style

- Use ruff for formatting (`ruff format .`), line length 100.
- Type hints on every public function.

### Naming

Test files are named `test_<module>.py`.

## Gotchas

The `workers` package reads settings at import time: set `APP_ENV` before importing it.

<!-- TODO: document the release process -->
"""


def _rules(text=CLAUDE_MD, rel="CLAUDE.md"):
    return {m.path: m for m in split_instruction_file(rel, text)}


def test_claude_md_splits_into_one_memory_per_rule():
    rules = _rules()
    assert list(rules) == [
        "/CLAUDE.md/this-file-provides-guidance-to-claude-code-when.md",
        "/CLAUDE.md/commands/make-dev-starts-the-api-on-port-8000.md",
        "/CLAUDE.md/commands/deploy-with-make-deploy-staging-first-then-make.md",
        "/CLAUDE.md/commands/database-migrations.md",
        "/CLAUDE.md/testing/run-the-suite-with.md",
        "/CLAUDE.md/testing/never-mock-the-database-in-integration-tests-use.md",
        "/CLAUDE.md/style/use-ruff-for-formatting-ruff-format-line-length.md",
        "/CLAUDE.md/style/type-hints-on-every-public-function.md",
        "/CLAUDE.md/style/naming/test-files-are-named-test-module-py.md",
        "/CLAUDE.md/gotchas/the-workers-package-reads-settings-at-import-time.md",
    ]
    deploy = rules["/CLAUDE.md/commands/deploy-with-make-deploy-staging-first-then-make.md"]
    assert deploy.content == "Deploy with `make deploy` (staging first, then `make deploy ENV=prod`).\n"
    assert (deploy.kind, deploy.key, deploy.origin, deploy.heading) == \
        ("workflow", "rule:CLAUDE.md#commands#3", "CLAUDE.md", ["Commands"])
    assert rule_key_parts(deploy.key) == ("CLAUDE.md", "commands", 3)
    # a bullet with sub-bullets is one rule, dedented; a lead-in keeps its code fence
    assert rules["/CLAUDE.md/commands/database-migrations.md"].content == (
        "Database migrations:\n- `alembic upgrade head` applies them\n"
        '- `alembic revision --autogenerate -m "msg"` creates one\n')
    assert rules["/CLAUDE.md/testing/run-the-suite-with.md"].content == \
        "Run the suite with:\n\n```bash\nuv run pytest -q -p no:warnings\n```\n"
    kinds = {p.split("/")[2]: m.kind for p, m in rules.items()}
    assert kinds == {"this-file-provides-guidance-to-claude-code-when.md": "note", "commands": "workflow",
                     "testing": "workflow", "style": "preference", "gotchas": "mistake"}
    naming = rules["/CLAUDE.md/style/naming/test-files-are-named-test-module-py.md"]
    assert naming.heading == ["Style", "Naming"] and naming.key == "rule:CLAUDE.md#style/naming#9"
    assert not any("TODO" in m.content for m in rules.values())  # HTML comments are not rules
    assert all(m.taint == "user" and m.support == 0 for m in rules.values())
    assert len({m.memory_id for m in rules.values()}) == len(rules)
    assert rules == _rules()  # same text, same ids and paths


def test_short_or_unstructured_files_stay_one_memory():
    for text in ("Use 4 spaces, never tabs.\n", "# Deploy\n\nDeploy with `make deploy`.\n",
                 "First paragraph.\n\nSecond paragraph, no headings or bullets.\n",
                 "To release:\n- bump the version\n- tag it\n", "1. build\n2. deploy\n"):
        [m] = split_instruction_file("workflows/release.md", text, default_kind="workflow")
        assert (m.path, m.content, m.kind, m.key, m.origin) == ("/workflows/release.md", text, "workflow", None, None)
    [m] = split_instruction_file("notes.txt", CLAUDE_MD)  # not Markdown: never split
    assert m.path == "/notes.txt"


def test_anthropic_style_h1_sections_and_duplicate_rules():
    text = "# Bash commands\n- npm run build: Build the project\n- npm run build: Build the project\n\n" \
           "# Code style\n- Use ES modules (import/export) syntax, not CommonJS (require)\n"
    rules = _rules(text, "docs/AGENTS.md")
    assert list(rules) == ["/docs/AGENTS.md/bash-commands/npm-run-build-build-the-project.md",
                           "/docs/AGENTS.md/bash-commands/npm-run-build-build-the-project-2.md",
                           "/docs/AGENTS.md/code-style/use-es-modules-import-export-syntax-not-commonjs.md"]
    assert [m.kind for m in rules.values()] == ["workflow", "workflow", "preference"]
    assert {m.origin for m in rules.values()} == {"docs/AGENTS.md"}


def test_crlf_and_bom_files_split_on_the_same_lines():
    crlf = "\ufeff" + CLAUDE_MD.replace("\n", "\r\n")
    assert [(m.path, m.content) for m in split_instruction_file("CLAUDE.md", crlf)] == \
        [(p, m.content) for p, m in _rules().items()]


@pytest.mark.parametrize(("heading", "kind"), [
    ("Code style", "preference"), ("Conventions", "preference"), ("How to deploy", "workflow"),
    ("Testing", "workflow"), ("Known issues", "mistake"), ("Deploy gotchas", "mistake"),
    ("Architecture", "fact"), ("About the team", None),
])
def test_heading_kinds(heading, kind):
    assert heading_kind([heading]) == kind


def test_create_from_dir_export_and_create_again_keeps_the_rules(catalog, tmp_path):
    src = tmp_path / "project"
    (src / "preferences").mkdir(parents=True)
    (src / "CLAUDE.md").write_text(CLAUDE_MD)
    (src / "preferences" / "tabs.md").write_text("Use 4 spaces, never tabs.\n")
    svc = StoreService(catalog)
    store = svc.create_from_dir("proj", src)
    before = svc.read_version(store["id"])
    assert len(before) == 11 and "/preferences/tabs.md" in {m.path for m in before}

    out = tmp_path / "out"
    written = svc.export("proj", out)
    assert written[-1] == out / "MEMORY.md" and len(written) == 12
    rule_file = (out / "CLAUDE.md" / "commands" / "deploy-with-make-deploy-staging-first-then-make.md").read_text()
    assert rule_file == ("---\nkey: rule:CLAUDE.md#commands#3\nkind: workflow\norigin: CLAUDE.md\nheading: Commands\n"
                         "---\nDeploy with `make deploy` (staging first, then `make deploy ENV=prod`).\n")
    assert (out / "preferences" / "tabs.md").read_text() == "Use 4 spaces, never tabs.\n"  # plain stays plain

    index = (out / "MEMORY.md").read_text()
    assert index.startswith(INDEX_MARKER)
    assert "- [CLAUDE.md › Commands](CLAUDE.md/commands/deploy-with-make-deploy-staging-first-then-make.md) — " \
           "Deploy with `make deploy` (staging first, then `make deploy ENV=prod`). (support 0, confidence 1.00)" \
           in index
    assert index.index("## Rules and preferences") < index.index("## Known mistakes") < index.index("## Workflows")
    assert index.count("\n- [") == 11

    again = svc.create_from_dir("proj-again", out)  # the index is not read back as a memory
    fields = ("memory_id", "path", "content", "kind", "key", "origin", "heading", "taint", "support", "confidence")
    assert sorted(tuple(getattr(m, f) for f in fields) for m in svc.read_version(again["id"])) == \
        sorted(tuple(getattr(m, f) for f in fields) for m in before)


def test_index_ranks_pinned_then_confidence_then_support(catalog, tmp_path):
    svc = StoreService(catalog)
    svc.create("s", memories=[
        Memory(path="/mistakes/a.md", content="Low one. More text.", kind="mistake", support=5, confidence=0.5),
        Memory(path="/mistakes/b.md", content="High one.", kind="mistake", support=1, confidence=0.9),
        Memory(path="/mistakes/c.md", content="Pinned one.", kind="mistake", confidence=0.3, pinned=True),
        Memory(path="/mistakes/d.md", content="High, more support.", kind="mistake", support=3, confidence=0.9),
        Memory(path="/MEMORY.md", content="A memory that holds the index's name.\n"),
    ])
    written = svc.export("s", tmp_path / "out")
    assert written[-1].name == "MEMORY.index.md"  # the memory keeps MEMORY.md
    lines = [ln for ln in written[-1].read_text().splitlines() if ln.startswith("- [")]
    assert [ln.split("](")[1].split(")")[0] for ln in lines[:4]] == \
        ["mistakes/c.md", "mistakes/d.md", "mistakes/b.md", "mistakes/a.md"]
    assert lines[0] == "- [c](mistakes/c.md) — Pinned one. (pinned, support 0, confidence 0.30)"
    assert lines[3] == "- [a](mistakes/a.md) — Low one. (support 5, confidence 0.50)"
    assert {m.path for m in read_memory_dir(tmp_path / "out")} == \
        {"/mistakes/a.md", "/mistakes/b.md", "/mistakes/c.md", "/mistakes/d.md", "/MEMORY.md"}


def test_export_claude_md_reassembles_rules_under_their_headings(catalog, tmp_path):
    src = tmp_path / "project"
    src.mkdir()
    (src / "CLAUDE.md").write_text(CLAUDE_MD)
    svc = StoreService(catalog)
    store = svc.create_from_dir("proj", src)
    mems = svc.read_version(store["id"])
    deploy = next(m for m in mems if m.key == "rule:CLAUDE.md#commands#3")
    # what a dream does: supersede one rule in place, learn two more
    mems = [m.model_copy(update={"content": "Deploy with `just deploy`; `make deploy` is gone.\n", "support": 3,
                                 "confidence": 0.8}) if m is deploy else m for m in mems]
    mems += [Memory(path="/mistakes/no-such-table.md", kind="mistake", support=4, confidence=0.9,
                    content="When tests fail with `no such table`, run `alembic upgrade head` first.\n"),
             Memory(path="/preferences/uv.md", kind="preference", support=2, confidence=0.7,
                    content="Use `uv add` to add dependencies, never `pip install`.\n")]
    v2 = svc.write_version(store["id"], mems, 1, {"type": "user"}, "edit")
    [path] = svc.export("proj", tmp_path / "out", version=v2, format="claude-md")
    assert path == tmp_path / "out" / "CLAUDE.md"
    text = path.read_text()
    assert text.startswith("# CLAUDE.md\n\n<!-- written by `dreams store export --format claude-md`")
    body = text.split("-->\n", 1)[1]
    assert body == """
- This file provides guidance to Claude Code when working with code in this repository.

## Commands

- `make dev` starts the API on port 8000 with auto-reload.
- Deploy with `just deploy`; `make deploy` is gone.
- Database migrations:
  - `alembic upgrade head` applies them
  - `alembic revision --autogenerate -m "msg"` creates one

## Testing

- Run the suite with:

  ```bash
  uv run pytest -q -p no:warnings
  ```
- Never mock the database in integration tests; use the `db` fixture from `tests/conftest.py`.

## Style

- Use ruff for formatting (`ruff format .`), line length 100.
- Type hints on every public function.

### Naming

- Test files are named `test_<module>.py`.

## Gotchas

- The `workers` package reads settings at import time: set `APP_ENV` before importing it.

## Rules and preferences

- Use `uv add` to add dependencies, never `pip install`.

## Known mistakes and fixes

- When tests fail with `no such table`, run `alembic upgrade head` first.
"""
    assert "support" not in body and "confidence" not in body
    [agents] = svc.export("proj", tmp_path / "out", format="agents-md")
    assert agents.name == "AGENTS.md" and agents.read_text().startswith("# AGENTS.md\n")
    # the instruction file reads back as rules under the same headings
    back = {m.content: m for m in split_instruction_file("CLAUDE.md", text)}
    assert back["Deploy with `just deploy`; `make deploy` is gone.\n"].heading == ["Commands"]
    assert back["Use `uv add` to add dependencies, never `pip install`.\n"].kind == "preference"
    assert back["When tests fail with `no such table`, run `alembic upgrade head` first.\n"].kind == "mistake"
    assert not any("written by" in c for c in back)


def test_front_matter_round_trips_support_confidence_and_taint(tmp_path):
    m = Memory(path="/mistakes/pip.md", content="Use `uv pip install`, the system pip is externally managed.\n",
               kind="mistake", support=4, confidence=0.8666, taint="tool_output")
    text = render_memory_file(m)
    meta, body = split_front_matter(text)
    assert meta == {"support": 4, "confidence": 0.87, "taint": "tool_output"}
    assert body == m.content and "support" not in body
    (tmp_path / "mistakes").mkdir()
    (tmp_path / "mistakes" / "pip.md").write_text(text)
    [back] = read_memory_dir(tmp_path)
    assert (back.support, back.confidence, back.taint, back.content, back.kind) == \
        (4, 0.87, "tool_output", m.content, "mistake")
    # hand-written files: no front matter written, none needed to read
    assert render_memory_file(Memory(path="/notes/a.md", content="x\n", taint="user")) == "x\n"


def test_bad_rule_front_matter_names_the_field(tmp_path):
    from dreaming.errors import BadInput

    for block, field in (("support: -1\n", "support"), ("support: 1.5\n", "support"), ("heading: {a: 1}\n", "heading"),
                         ("origin: ''\n", "origin")):
        with pytest.raises(BadInput) as e:
            split_front_matter(f"---\n{block}---\nbody\n", "m.md")
        assert e.value.field == field
    meta, _ = split_front_matter("---\norigin: CLAUDE.md\nheading: [Style, Naming]\n---\nbody\n")
    assert meta == {"origin": "CLAUDE.md", "heading": ["Style", "Naming"]}


def test_version_files_without_origin_and_heading_still_read(tmp_path):
    old = pa.table({"memory_id": ["mem_1"], "path": ["/a.md"], "content": ["x"], "content_sha256": [""],
                    "kind": ["note"], "key": pa.array([None], pa.string()), "support": pa.array([0], pa.int32()),
                    "confidence": [1.0], "taint": ["user"], "pinned": [False]})
    pq.write_table(old, tmp_path / "v1.parquet")
    [m] = memories_from_table(pq.read_table(tmp_path / "v1.parquet"))
    assert (m.origin, m.heading) == (None, [])


def test_export_refuses_a_file_in_the_way_before_writing_anything(catalog, tmp_path):
    svc = StoreService(catalog)
    svc.create("s", memories=[Memory(path="/a.md", content="a"), Memory(path="/CLAUDE.md/style/x.md", content="x",
                                                                          origin="CLAUDE.md", heading=["Style"])])
    out = tmp_path / "out"
    out.mkdir()
    (out / "CLAUDE.md").write_text("the project's own file\n")
    from dreaming.errors import BadInput

    with pytest.raises(BadInput, match="export into an empty folder"):
        svc.export("s", out)
    assert sorted(p.name for p in out.iterdir()) == ["CLAUDE.md"]
    with pytest.raises(BadInput, match="format"):
        svc.export("s", out, format="html")


def test_cli_export_format(catalog, tmp_path, monkeypatch, capsys):
    from dreaming.cli import main

    src = tmp_path / "project"
    src.mkdir()
    (src / "CLAUDE.md").write_text(CLAUDE_MD)
    StoreService(catalog).create_from_dir("proj", src)

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["dreams", *args])
        try:
            main()
        except SystemExit as e:
            return int(e.code or 0)
        return 0

    assert run("store", "export", "proj", str(tmp_path / "mem")) == 0
    assert "wrote 10 memory files and the index" in capsys.readouterr().out
    assert run("store", "export", "proj", str(tmp_path / "one"), "--format", "claude-md") == 0
    assert (tmp_path / "one" / "CLAUDE.md").read_text().count("\n## ") == 4
    assert run("store", "export", "proj", str(tmp_path / "one"), "--format", "html") == 2


def test_the_index_counts_one_memory_in_the_singular():
    from dreaming.models import Memory
    from dreaming.stores import render_index

    one = Memory(memory_id="mem_1", path="/mistakes/x.md", content="When `x` fails, run `y` first.", kind="mistake")
    assert "1 memory, most trusted first" in render_index([one])
    assert "2 memories, most trusted first" in render_index([one, one.model_copy(update={"memory_id": "mem_2",
                                                                                       "path": "/mistakes/z.md"})])
