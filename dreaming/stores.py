"""Memory stores whose versions are immutable Parquet files.

``data/stores/<store_id>/v<version>.parquet`` holds the whole store at that version. A version is
reserved in the catalog, its file written atomically, then marked ready; the head only moves by
compare-and-swap (``Catalog.cas_head``). Nothing here ever rewrites a version file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dreaming import ids
from dreaming.errors import BadInput, InvalidState
from dreaming.models import Memory, memories_from_table, memories_to_table, utcnow
from dreaming.schema import KINDS, MAX_MEMORIES, TAINTS

if TYPE_CHECKING:  # reading a version needs no SQLAlchemy: a catalog_read.CatalogReader serves it too
    from dreaming.catalog import Catalog
    from dreaming.catalog_read import CatalogReader

# pyarrow (dreaming.atomic), yaml and dreaming.instructions_file (markdown-it) are imported where
# files are read or written: `dreams store show` needs none of them (CLI start-up, issue 14)

TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".text", ""}
EXPORT_FORMATS = {"dir": None, "claude-md": "CLAUDE.md", "agents-md": "AGENTS.md"}
INDEX_NAMES = ("MEMORY.md", "MEMORY.index.md", "MEMORY.dreams-index.md")
INDEX_MARKER = "<!-- dreams:memory-index"
"""First line of the index ``export`` writes; ``read_memory_dir`` skips a root file that starts with it."""
_SCOPE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.*-]+)?$")


@dataclass(frozen=True)
class Scope:
    """A store's tenant/agent boundary: ``tenant`` or ``tenant/agent`` (``tenant/*`` = all agents)."""

    tenant: str
    agent: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Scope":
        if not _SCOPE.match(text or ""):
            raise BadInput(f"scope must look like 'tenant' or 'tenant/agent', got {text!r}", field="scope")
        tenant, _, agent = text.partition("/")
        return cls(tenant, None if agent in ("", "*") else agent)

    def __str__(self) -> str:
        return self.tenant if self.agent is None else f"{self.tenant}/{self.agent}"


def version_relpath(store_id: str, version: int) -> str:
    return f"stores/{store_id}/v{version}.parquet"


class StoreService:
    """Create, read, version and export memory stores."""

    def __init__(self, catalog: Catalog | CatalogReader, read_with_duckdb: bool = False):
        self.catalog = catalog
        self.settings = catalog.settings
        self._read_file = read_memories_duckdb if read_with_duckdb else read_memories

    @classmethod
    def for_reading(cls, settings=None) -> "StoreService":
        """A service for the read-only commands (``dreams store show``): the catalog through plain
        sqlite3 where it can (``dreaming.catalog_read``), version files through DuckDB; neither
        SQLAlchemy nor pyarrow is imported (with the setting ``fast_reads`` off: both, as elsewhere). For
        reading only: its catalog has no write methods (``StoreService(Catalog())`` writes)."""
        from dreaming.catalog_read import open_catalog

        reader = open_catalog(settings)
        return cls(reader, read_with_duckdb=reader.settings.fast_reads)

    # --- creation -------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        scope: str = "default",
        description: str = "",
        metadata: dict | None = None,
        memories: list[Memory] | None = None,
        created_by: dict | None = None,
        forked_from: dict | None = None,
        message: str = "created",
    ) -> dict:
        """Create a store whose version 1 holds ``memories`` (empty by default); returns the store."""
        if not name or len(name) > 255 or any(ord(c) < 32 for c in name):
            raise BadInput("store name must be 1-255 characters without control characters", field="name")
        Scope.parse(scope)
        now = utcnow()
        store_id = ids.new_id(ids.STORE)
        with self.catalog.tx() as conn:
            self.catalog.insert_store(
                conn,
                {
                    "id": store_id,
                    "name": name,
                    "description": description,
                    "metadata": metadata or {},
                    "scope": scope,
                    "head_version": None,
                    "forked_from": forked_from,
                    "created_at": now,
                    "updated_at": now,
                },
            )
        version = self.write_version(store_id, memories or [], None, created_by or {"type": "user"}, message)
        with self.catalog.tx() as conn:
            self.catalog.cas_head(conn, store_id, None, version)
        return self.catalog.get_store(store_id)

    def create_from_dir(self, name: str, directory: Path, scope: str = "default", description: str = "") -> dict:
        return self.create(name, scope=scope, description=description, memories=read_memory_dir(directory),
                           message=f"created from {directory}")

    # --- versions -------------------------------------------------------------------------------

    def write_version(
        self,
        store_id: str,
        memories: list[Memory],
        parent_version: int | None,
        created_by: dict,
        message: str,
        allow_read_only: bool = False,  # dreaming.tiers.promote_to alone: the one way into a read-only store
    ) -> int:
        """Write a new immutable version (not the head). Returns its number. A read-only store refuses it
        (InvalidState, ``dreaming.tiers``): every path that writes memories comes through here."""
        if not allow_read_only:
            from dreaming.tiers import check_writable

            check_writable(self.catalog.get_store(store_id))
        check_store_content(memories)
        version = self.catalog.reserve_version(store_id, parent_version, created_by, message)
        rel = version_relpath(store_id, version)
        final = self.settings.home / rel
        ordered = sorted(memories, key=lambda m: (m.path, m.memory_id))
        from dreaming.atomic import write_parquet_atomic

        write_parquet_atomic(memories_to_table(ordered), final, self.settings.staging_dir)
        with self.catalog.tx() as conn:
            self.catalog.finish_version(conn, store_id, version, rel, ids.sha256_file(final), len(ordered))
        return version

    def read_version(self, store_id: str, version: int | None = None) -> list[Memory]:
        """All memories of a version (default: the head)."""
        if version is None:
            version = self.catalog.get_store(store_id)["head_version"]
        row = self.catalog.get_version(store_id, version)
        return self._read_file(self.settings.home / row["path"])

    def head(self, ref: str) -> tuple[dict, list[Memory]]:
        store = self.catalog.get_store(ref)
        return store, self.read_version(store["id"], store["head_version"])

    def export(self, ref: str, directory: Path, version: int | None = None, format: str = "dir") -> list[Path]:
        """Write a version (default: head) out as files; returns the files written.

        ``format="dir"``: one file per memory path (front matter carries the metadata) and, last, the
        index ``MEMORY.md`` (``render_index``; ``MEMORY.index.md`` if a memory holds ``/MEMORY.md``).
        ``"claude-md"`` / ``"agents-md"``: one instruction file ``CLAUDE.md`` / ``AGENTS.md``
        (``dreaming.instructions_file.render_instruction_file``). Every file is written atomically;
        all paths are checked before the first one is written."""
        if format not in EXPORT_FORMATS:
            raise BadInput(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}", field="format")
        store = self.catalog.get_store(ref)
        version = version or store["head_version"]
        memories = self.read_version(store["id"], version)
        from dreaming.atomic import write_text_atomic

        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise BadInput("export target is not a folder", file=str(directory))
        about = f"{store['name']} ({store['id']}) v{version}"
        if format != "dir":
            name = EXPORT_FORMATS[format]
            note = (f"written by `dreams store export --format {format}` from store {about}, {len(memories)} "
                    "memories; edit the store, not this file")
            target = directory / name
            if target.is_dir():
                raise BadInput(f"{name} is a folder here; export into another folder", file=str(target))
            from dreaming.instructions_file import render_instruction_file

            return [write_text_atomic(render_instruction_file(memories, name, note), target,
                                      self.settings.staging_dir)]
        paths = {m.path.lstrip("/") for m in memories}
        index_name = next(n for n in INDEX_NAMES if n not in paths)
        root = directory.resolve()
        plan = []
        for m in sorted(memories, key=lambda m: m.path):
            rel = m.path.lstrip("/")
            target = directory / rel
            if root not in target.resolve().parents:
                raise BadInput(f"memory path escapes the export folder: {m.path!r}")
            parents = rel.split("/")[:-1]
            for i in range(1, len(parents) + 1):
                above = "/".join(parents[:i])
                if above in paths:
                    raise BadInput(f"memory path {m.path!r} lies under another memory's file /{above}")
                if (directory / above).exists() and not (directory / above).is_dir():
                    raise BadInput(f"{above} is a file in the export folder, memory {m.path!r} needs a folder "
                                   "there; export into an empty folder", file=str(directory / above))
            if target.is_dir():
                raise BadInput(f"{rel} is a folder in the export folder; export into an empty folder",
                               file=str(target))
            plan.append((m, target))
        written = [write_text_atomic(render_memory_file(m), t, self.settings.staging_dir) for m, t in plan]
        written.append(write_text_atomic(render_index(memories, about), directory / index_name,
                                         self.settings.staging_dir))
        return written


def read_memories(path: Path) -> list[Memory]:
    """The memories of a version file, through pyarrow (no pyarrow.dataset)."""
    import pyarrow.parquet as pq

    return memories_from_table(pq.ParquetFile(path).read())


def read_memories_duckdb(path: Path) -> list[Memory]:
    """``read_memories`` through DuckDB (imported ~0.2 s faster than pyarrow: `dreams store show`), the
    same memories in the same order (tests/test_catalog_read.py). A path DuckDB would read as a glob is
    read through pyarrow."""
    if any(c in str(path) for c in "*?[{"):
        return read_memories(path)
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        cur = con.execute("SELECT * FROM read_parquet(?, hive_partitioning = false)", [str(path)])
        cols = [d[0] for d in cur.description]
        return [Memory.model_validate(dict(zip(cols, r, strict=True))) for r in cur.fetchall()]
    finally:
        con.close()


def check_store_content(memories: list[Memory]) -> None:
    """Invariants every version must hold (the GX gate checks more before promotion)."""
    if len(memories) > MAX_MEMORIES:
        raise InvalidState(f"a store holds at most {MAX_MEMORIES} memories, got {len(memories)}")
    seen_paths: dict[str, str] = {}
    seen_ids: set[str] = set()
    for m in memories:
        if m.memory_id in seen_ids:
            raise InvalidState(f"duplicate memory id {m.memory_id}")
        seen_ids.add(m.memory_id)
        if m.path in seen_paths:
            raise InvalidState(f"two memories share the path {m.path!r}: {seen_paths[m.path]} and {m.memory_id}")
        seen_paths[m.path] = m.memory_id


def read_memory_dir(directory: Path) -> list[Memory]:
    """Markdown/text files of a folder as memories, keyed by relative path (Claude Code's shape).

    A structured Markdown note without front matter (CLAUDE.md, AGENTS.md, any file with headings
    or several bullets) becomes one memory per rule (``dreaming.instructions_file``). Hidden files
    and the index that ``export`` writes at the root (recognised by its first line) are skipped."""
    from dreaming.instructions_file import split_instruction_file

    directory = Path(directory)
    if not directory.is_dir():
        raise BadInput("not a folder", file=str(directory))
    memories = []
    now = utcnow()
    for f in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = f.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts) or f.suffix.lower() not in TEXT_SUFFIXES:
            continue
        try:
            content = f.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadInput(f"not valid UTF-8 at byte {e.start}", file=str(f)) from None
        if len(rel.parts) == 1 and content.lstrip("\ufeff").startswith(INDEX_MARKER):
            continue
        meta, body = split_front_matter(content, str(f))
        try:
            if not meta:  # no field of ours: hand-written, so split it if it is a structured note
                memories.extend(split_instruction_file(rel.as_posix(), body,
                                                       default_kind=_kind_from_path(rel.as_posix()), now=now))
                continue
            memories.append(
                Memory(
                    memory_id=ids.stable_id(ids.MEMORY, "dir", rel.as_posix()),
                    path="/" + rel.as_posix(),
                    content=body,
                    kind=meta.pop("kind", None) or _kind_from_path(rel.as_posix()),
                    taint=meta.pop("taint", None) or "user",
                    created_at=now,
                    updated_at=now,
                    **meta,
                )
            )
        except ValueError as e:
            raise BadInput(str(e).splitlines()[-1], file=str(f)) from None
    return memories


def _kind_from_path(rel: str) -> str:
    top = rel.split("/", 1)[0].lower().rstrip("s")
    return {"preference": "preference", "mistake": "mistake", "workflow": "workflow", "fact": "fact",
            "insight": "insight"}.get(top, "note")


# --- optional front matter of memory files (docs/scenarios.md#front-matter) ---------------------

FRONT_MATTER_FIELDS = ("key", "kind", "pinned", "valid_until", "first_seen", "last_seen", "confidence", "taint",
                       "support", "origin", "heading")
_FM_TIMES = ("valid_until", "first_seen", "last_seen")


def split_front_matter(text: str, file: str = "") -> tuple[dict, str]:
    """``(fields, body)`` of a memory file that may start with a YAML front matter block.

    ``---`` on the first line, YAML ``name: value`` lines, ``---`` alone on a line; the body is
    everything after that line. Recognised fields: key, kind, pinned, valid_until, first_seen,
    last_seen (dates or RFC 3339 times, UTC when no zone is given), confidence (0-1), taint,
    support (distinct sessions, an integer >= 0), origin (the instruction file a rule was split
    from) and heading (the heading it sat under: a string, or a list for nested headings).
    Other fields (e.g. Claude Code's ``name``/``description``/``type``) are ignored. A block that
    is not a YAML mapping (a Markdown rule followed by text) is content, not front matter. An empty
    block (``---``, ``---``) is front matter with no fields. Bad values raise ``BadInput`` naming the
    file, line and field.
    """
    norm = text[1:] if text.startswith("\ufeff") else text
    if not (norm.startswith("---\n") or norm.startswith("---\r\n")):
        return {}, text
    lines = norm.splitlines(keepends=True)
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip("\r\n") == "---"), None)
    if end is None:
        return {}, text
    block = "".join(lines[1:end])
    import yaml

    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise BadInput(f"front matter is not valid YAML: {getattr(e, 'problem', e)}", file=file,
                       line=(mark.line + 2) if mark else None) from None
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        return {}, text
    body = "".join(lines[end + 1:])
    line_of = {ln.split(":", 1)[0].strip(): i + 2 for i, ln in enumerate(lines[1:end]) if ":" in ln}
    out: dict = {}
    for name in FRONT_MATTER_FIELDS:
        if name not in data or data[name] is None:
            continue
        value, where = data[name], {"file": file, "line": line_of.get(name), "field": name}
        if name == "key":
            if not isinstance(value, str | int) or not str(value).strip():
                raise BadInput("key must be a non-empty string", **where)
            out[name] = str(value).strip()
        elif name == "kind":
            if value not in KINDS:
                raise BadInput(f"kind must be one of {', '.join(KINDS)}, got {value!r}", **where)
            out[name] = value
        elif name == "taint":
            if value not in TAINTS:
                raise BadInput(f"taint must be one of {', '.join(TAINTS)}, got {value!r}", **where)
            out[name] = value
        elif name == "pinned":
            if not isinstance(value, bool):
                raise BadInput(f"pinned must be true or false, got {value!r}", **where)
            out[name] = value
        elif name == "confidence":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise BadInput(f"confidence must be a number from 0 to 1, got {value!r}", **where)
            out[name] = float(value)
        elif name == "support":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise BadInput(f"support must be a whole number >= 0, got {value!r}", **where)
            out[name] = value
        elif name == "origin":
            if not isinstance(value, str) or not value.strip():
                raise BadInput("origin must be a non-empty string (a file path)", **where)
            out[name] = value.strip()
        elif name == "heading":
            items = [value] if isinstance(value, str | int | float) and not isinstance(value, bool) else value
            if not isinstance(items, list) or not all(isinstance(h, str | int | float) and not isinstance(h, bool)
                                                      for h in items):
                raise BadInput("heading must be a string or a list of strings", **where)
            out[name] = [str(h) for h in items]
        else:
            out[name] = _fm_time(value, where)
    return out, body


def _fm_time(value, where: dict) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise BadInput(f"not a date or RFC 3339 time: {value!r}", **where) from None
    else:
        raise BadInput(f"not a date or RFC 3339 time: {value!r}", **where)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def memory_front_matter(m: Memory) -> dict:
    """The front matter ``export`` writes for ``m``, so that the text itself carries no statistics:
    key, kind (when the top folder would not give it), pinned, valid_until, origin and heading (a rule
    split from an instruction file), support and confidence (rounded to 2 places; when the memory was
    learned from sessions or its confidence is not 1), taint (when it is not ``user``, the default a
    folder reads with) and, with any of those, first_seen/last_seen. Empty when the memory needs none:
    a plain hand-written file stays plain."""
    fm: dict = {}
    if m.key:
        fm["key"] = m.key
    if m.kind != _kind_from_path(m.path.lstrip("/")):
        fm["kind"] = m.kind
    if m.pinned:
        fm["pinned"] = True
    if m.valid_until is not None:
        fm["valid_until"] = m.valid_until.astimezone(UTC)
    if m.origin:
        fm["origin"] = m.origin
        if m.heading:
            fm["heading"] = m.heading[0] if len(m.heading) == 1 else list(m.heading)
    if m.support > 0 or round(m.confidence, 2) != 1.0:
        fm["support"] = int(m.support)
        fm["confidence"] = round(float(m.confidence), 2)
    if m.taint != "user":
        fm["taint"] = m.taint
    if fm and m.first_seen is not None:
        fm["first_seen"] = m.first_seen.astimezone(UTC)
    if fm and m.last_seen is not None:
        fm["last_seen"] = m.last_seen.astimezone(UTC)
    return fm


def render_memory_file(m: Memory) -> str:
    """A memory as a file: front matter (when it has any) and its content, read back by ``read_memory_dir``."""
    fm = memory_front_matter(m)
    if fm:
        import yaml

        return "---\n" + yaml.safe_dump(fm, sort_keys=False, default_flow_style=False, allow_unicode=True) + \
            "---\n" + m.content
    if m.content.startswith("---\n") or m.content.startswith("---\r\n") or m.content.startswith("\ufeff---"):
        return "---\n---\n" + m.content  # an empty block keeps content that looks like front matter intact
    return m.content


def render_index(memories: list[Memory], about: str = "") -> str:
    """The ``MEMORY.md`` that ``export`` writes next to the files: every memory on one line, grouped by
    kind (``KIND_SECTIONS``) and ranked (pinned first, then confidence, support, path):
    ``- [title](relative/path.md) — first sentence (support N, confidence 0.xx)``. Its first line is
    ``INDEX_MARKER``, so ``read_memory_dir`` never reads it back as a memory."""
    from urllib.parse import quote

    from dreaming.instructions_file import KIND_SECTIONS, first_sentence, rank_key

    out = [f"{INDEX_MARKER}: written by `dreams store export`{' from ' + about if about else ''}; "
           "rewritten on every export, never read back as a memory -->\n", "# Memory index\n\n",
           f"{len(memories)} {'memory' if len(memories) == 1 else 'memories'}, most trusted first in each section.\n"]
    for kind, title in KIND_SECTIONS:
        group = sorted((m for m in memories if m.kind == kind), key=rank_key)
        if not group:
            continue
        out.append(f"\n## {title}\n\n")
        for m in group:
            rel = m.path.lstrip("/")
            if m.origin:  # a rule of an instruction file: where it sits there
                label = " › ".join([m.origin, *m.heading])
            else:
                name = rel.rsplit("/", 1)[-1]
                stem = name.rsplit(".", 1)[0] if "." in name.strip(".") else name
                label = " ".join(w for w in re.split(r"[-_\s]+", stem) if w) or rel
            label = label.replace("[", "(").replace("]", ")")
            stats = ("pinned, " if m.pinned else "") + f"support {m.support}, confidence {m.confidence:.2f}"
            sentence = first_sentence(m.content)
            out.append(f"- [{label}]({quote(rel, safe='/-._~')})" + (f" — {sentence}" if sentence else "") +
                       f" ({stats})\n")
    return "".join(out)
