"""Hand-written instruction files (CLAUDE.md, AGENTS.md, any structured Markdown note) ⇄ rule memories.

``split_instruction_file`` turns one long note into one memory per rule, so that a dream can
merge, supersede and prune single rules ("Deploy with `make deploy`") instead of a whole file.
``render_instruction_file`` is the way back: a store as one CLAUDE.md / AGENTS.md, the split rules
reassembled under their original headings. The Markdown is parsed with markdown-it-py
(CommonMark + tables); nothing here parses Markdown by hand. The layout is documented in
docs/cli.md ("dreams store create --from-dir and dreams store export").

What is one rule, under the nearest heading:
- each top-level bullet (``-``/``*``/``+``), with its sub-bullets, continuation lines and code;
- each paragraph, code fence, table, block quote or HTML block (HTML comments are dropped);
- a numbered list is one rule (its steps only make sense together);
- a paragraph that ends with ``:`` and the list, fence or table right after it are one rule
  ("Run the tests with:" + the fence; "Before committing:" + its bullets).
A lone ``#`` title at the top is the document's name, not a section. A file is split only when it
has at least two rules and some structure (a heading other than the title, or two bullets);
otherwise it stays one memory, as before.

Each rule memory: path ``/<file>/<heading-slug>/.../<rule-slug>.md``, key
``rule:<file>#<heading-slug>/...#<n>`` (``n``: the rule's 1-based position in the file, which is
also how ``render_instruction_file`` restores the order), ``origin`` the file's relative path,
``heading`` the trail of heading texts, kind from the nearest heading that names one (``HEADING_KINDS``),
else the file's default kind.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from markdown_it import MarkdownIt

from dreaming import ids
from dreaming.models import Memory
from dreaming.redaction import redact

MARKDOWN_SUFFIXES = (".md", ".markdown")

# Heading words → kind. The nearest heading that names one wins; within one heading the first row
# that matches wins (so "Testing conventions" is a preference, "Deploy gotchas" a mistake).
HEADING_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("mistake", ("gotcha", "gotchas", "pitfall", "pitfalls", "known issue", "known issues", "caveat", "caveats",
                 "troubleshooting", "mistake", "mistakes", "common errors", "warning", "warnings")),
    ("preference", ("preference", "preferences", "convention", "conventions", "style", "guideline", "guidelines",
                    "formatting", "naming", "best practices")),
    ("workflow", ("workflow", "workflows", "how to", "howto", "command", "commands", "deploy", "deploying",
                  "deployment", "deployments", "testing", "test", "tests", "build", "building", "release",
                  "releasing", "setup", "set up", "install", "installation", "development", "running", "usage",
                  "scripts", "ci", "getting started")),
    ("fact", ("architecture", "structure", "layout", "overview", "fact", "facts")),
)

_md = MarkdownIt("commonmark").enable("table")
_RULE_KEY = re.compile(r"^rule:(?P<origin>.+)#(?P<heading>[^#]*)#(?P<n>\d+)$")
_MARKER = re.compile(r"^(\s*)(?:[-*+]|\d{1,9}[.)])(?:[ \t]+|$)")
_COMMENT = re.compile(r"^\s*<!--.*?-->\s*$", re.S)


def is_instruction_candidate(rel_path: str) -> bool:
    """Whether a file may be split at all: a Markdown file (CLAUDE.md, AGENTS.md, any ``.md``)."""
    return rel_path.lower().endswith(MARKDOWN_SUFFIXES)


def heading_kind(trail: Iterable[str]) -> str | None:
    """The kind that the nearest heading of ``trail`` names (``HEADING_KINDS``), or None."""
    for text in reversed(list(trail)):
        norm = " " + " ".join(re.findall(r"[a-z0-9]+", text.lower().replace("'", ""))) + " "
        for kind, words in HEADING_KINDS:
            if any(f" {w} " in norm for w in words):
                return kind
    return None


def slug(text: str, max_words: int = 8, max_len: int = 60) -> str:
    """Lower-case words joined by '-', cut at a word boundary (never mid-word); secrets are redacted first,
    so a path never spells one out (as ``curators.rules.common._slug``)."""
    words = re.findall(r"[^\W_]+", redact(text)[0].lower())
    out = ""
    for w in words[:max_words]:
        cand = f"{out}-{w}" if out else w
        if len(cand) > max_len:
            break
        out = cand
    return out or (words[0][:max_len] if words else "")


def _first_line(content: str) -> str:
    """The line a rule is named after: its first non-empty line outside a code fence marker."""
    return next((ln for ln in content.splitlines() if ln.strip() and not ln.lstrip().startswith("```")), "")


def renamed_rule_path(path: str, key: str | None, old: str, new: str) -> str | None:
    """Where a rule split from an instruction file goes when its text ``old`` is replaced by ``new``: it was
    named after its first line (``…/<slug>.md``, or ``…/<slug>-<k>.md``), so it takes the new first line's
    name in the same file and headings. None when the memory is not such a rule, or its name is not the one
    derived from its text (a person chose it: it stays)."""
    if rule_key_parts(key) is None:
        return None
    folder, _, name = path.rpartition("/")
    derived = slug(_first_line(old))
    stem = name.removesuffix(".md")
    if not derived or not (stem == derived or re.fullmatch(re.escape(derived) + r"-\d+", stem)):
        return None
    fresh = slug(_first_line(new))
    return f"{folder}/{fresh}.md" if fresh else None


def rule_key_parts(key: str | None) -> tuple[str, str, int] | None:
    """``(origin, heading_slugs, n)`` of a ``rule:`` key, None for any other key."""
    m = _RULE_KEY.match(key or "")
    return (m["origin"], m["heading"], int(m["n"])) if m else None


# --- splitting ---------------------------------------------------------------------------------------


@dataclass
class _Block:
    trail: list[str]
    start: int
    end: int
    kind: str  # "item" | "list" | "paragraph" | "other"
    lead_in: bool = False
    items: list[tuple[int, int]] = field(default_factory=list)


def _blocks(text: str) -> tuple[list[_Block], int, int]:
    """Top-level blocks with their heading trail; also the count of section headings and of bullets."""
    tokens = _md.parse(text)
    heads = [(int(t.tag[1]), tokens[i + 1].content.strip()) for i, t in enumerate(tokens)
             if t.type == "heading_open" and t.level == 0]
    title = len(heads) >= 1 and heads[0][0] == 1 and sum(1 for lv, _ in heads if lv == 1) == 1
    stack: list[tuple[int, str]] = []
    blocks: list[_Block] = []
    sections = bullets = 0
    i, first_heading = 0, True
    while i < len(tokens):
        t = tokens[i]
        if t.level != 0 or t.type.endswith("_close") or t.type == "inline":
            i += 1
            continue
        trail = [h for _, h in stack]
        if t.type == "heading_open":
            level, text_ = int(t.tag[1]), tokens[i + 1].content.strip()
            if not (first_heading and title):
                while stack and stack[-1][0] >= level:
                    stack.pop()
                stack.append((level, text_))
                sections += 1
            first_heading = False
        elif t.type == "bullet_list_open":
            items, depth, j = [], 0, i
            while True:
                tj = tokens[j]
                if tj.type == "list_item_open" and tj.level == 1:
                    items.append(tuple(tj.map))
                depth += tj.nesting
                if depth == 0:
                    break
                j += 1
            bullets += len(items)
            blocks.append(_Block(trail, t.map[0], t.map[1], "list", items=items))
            i = j
        elif t.type in ("paragraph_open", "ordered_list_open", "fence", "code_block", "blockquote_open",
                        "table_open", "html_block"):
            if not (t.type == "html_block" and _COMMENT.match(t.content)):
                kind = "paragraph" if t.type == "paragraph_open" else "other"
                b = _Block(trail, t.map[0], t.map[1], kind)
                if kind == "paragraph" and tokens[i + 1].content.rstrip().endswith(":"):
                    b.lead_in = True
                blocks.append(b)
        i += 1
    # a lead-in ("…:") and the list/fence/table right after it, under the same heading, are one rule
    merged: list[_Block] = []
    for b in blocks:
        prev = merged[-1] if merged else None
        if prev is not None and prev.lead_in and prev.kind == "paragraph" and b.kind in ("list", "other") \
                and prev.trail == b.trail:
            merged[-1] = _Block(prev.trail, prev.start, b.end, "other")
            continue
        merged.append(b)
    rules: list[_Block] = []
    for b in merged:
        if b.kind == "list":
            rules.extend(_Block(b.trail, s, e, "item") for s, e in b.items)
        else:
            rules.append(b)
    return rules, sections, bullets


def _content(lines: list[str], b: _Block) -> str:
    chunk = lines[b.start:b.end]
    while chunk and not chunk[-1].strip():
        chunk.pop()
    if b.kind == "item" and chunk:
        m = _MARKER.match(chunk[0])
        indent = len(m.group(0)) if m else 0
        first = chunk[0][indent:] if m else chunk[0].lstrip()
        rest = [ln[min(indent, len(ln) - len(ln.lstrip(" "))):] for ln in chunk[1:]]
        chunk = [first, *rest]
    return "".join(ln if ln.endswith("\n") else ln + "\n" for ln in chunk)


def split_instruction_file(
    rel_path: str,
    text: str,
    *,
    default_kind: str = "note",
    taint: str = "user",
    now: datetime | None = None,
) -> list[Memory]:
    """One memory per rule of a structured Markdown note; a list of one memory (the whole file at
    ``/<rel_path>``, as ``read_memory_dir`` always made it) when it has a single rule or no structure.
    ``rel_path`` is the file's path relative to the imported folder, with '/' separators."""
    rel_path = rel_path.strip("/")
    whole = [Memory(memory_id=ids.stable_id(ids.MEMORY, "dir", rel_path), path="/" + rel_path, content=text,
                    kind=default_kind, taint=taint, created_at=now, updated_at=now)]
    if not is_instruction_candidate(rel_path):
        return whole
    # markdown-it counts lines by \n only (after turning \r\n and \r into \n): slice the same lines
    norm = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    rules, sections, bullets = _blocks(norm)
    if len(rules) < 2 or (sections == 0 and bullets < 2):
        return whole
    lines = norm.split("\n")
    lines = [ln + "\n" for ln in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    out: list[Memory] = []
    used: set[str] = set()
    for n, b in enumerate(rules, start=1):
        content = _content(lines, b)
        if not content.strip():
            continue
        head_slugs = [slug(h, max_words=6, max_len=48) or f"section-{k}" for k, h in enumerate(b.trail, start=1)]
        base = "/".join(["", rel_path, *head_slugs, slug(_first_line(content)) or f"rule-{n}"])
        path, k = base + ".md", 2
        while path.casefold() in used:
            path, k = f"{base}-{k}.md", k + 1
        used.add(path.casefold())
        out.append(Memory(
            memory_id=ids.stable_id(ids.MEMORY, "dir", path.lstrip("/")),
            path=path,
            content=content,
            kind=heading_kind(b.trail) or default_kind,
            key=f"rule:{rel_path}#{'/'.join(head_slugs)}#{n}",
            origin=rel_path,
            heading=list(b.trail),
            taint=taint,
            created_at=now,
            updated_at=now,
        ))
    return out if len(out) >= 2 else whole


# --- reassembly: a store as one instruction file ---------------------------------------------------

KIND_SECTIONS: tuple[tuple[str, str], ...] = (
    ("preference", "Rules and preferences"),
    ("mistake", "Known mistakes and fixes"),
    ("workflow", "Workflows"),
    ("fact", "Facts"),
    ("insight", "Insights"),
    ("note", "Notes"),
)


def rank_key(m: Memory) -> tuple:
    """Pinned first, then confidence (high first), support (high first), path."""
    return (not m.pinned, -round(m.confidence, 6), -m.support, m.path)


def bullet(content: str) -> str:
    """A memory's content as one Markdown bullet (continuation lines indented under it)."""
    lines = content.strip("\n").splitlines() or [""]
    lines[0] = lines[0].lstrip("#").strip() if lines[0].lstrip().startswith("#") else lines[0]
    out = ["- " + lines[0]]
    out += ["  " + ln if ln.strip() else "" for ln in lines[1:]]
    return "\n".join(out) + "\n"


@dataclass
class _Node:
    rules: list[Memory] = field(default_factory=list)
    learned: list[Memory] = field(default_factory=list)
    children: dict[str, "_Node"] = field(default_factory=dict)


def render_instruction_file(memories: list[Memory], name: str = "CLAUDE.md", note: str = "") -> str:
    """All memories as one instruction file: rules split from an instruction file under their original
    headings, in their original order; every other memory as a bullet in a section per kind
    (``KIND_SECTIONS``), ranked by ``rank_key``. No statistics in the text. ``note`` goes into an HTML
    comment under the title (which ``split_instruction_file`` drops when the file is read back)."""
    root = _Node()
    origins = sorted({m.origin for m in memories if m.origin}, key=lambda o: (o.lower() != name.lower(), o))
    order = {o: i for i, o in enumerate(origins)}

    def position(m: Memory) -> tuple:
        parts = rule_key_parts(m.key)
        return (order[m.origin], parts[2] if parts else 1 << 30, m.path)

    for m in sorted((m for m in memories if m.origin), key=position):
        node = root
        for h in m.heading:
            node = node.children.setdefault(h, _Node())
        node.rules.append(m)
    for kind, title in KIND_SECTIONS:
        learned = sorted((m for m in memories if not m.origin and m.kind == kind), key=rank_key)
        if not learned:
            continue
        same = next((k for k in root.children if k.strip().casefold() == title.casefold()), None)
        root.children.setdefault(same or title, _Node()).learned.extend(learned)

    out = [f"# {name}\n"]
    if note:
        out.append(f"\n<!-- {note.replace('-->', '-- >')} -->\n")

    def emit(node: _Node, depth: int) -> None:
        items = node.rules + node.learned
        if items:
            out.append("\n" + "".join(bullet(m.content) for m in items))
        for heading, child in node.children.items():
            out.append(f"\n{'#' * min(depth + 2, 6)} {heading}\n")
            emit(child, depth + 1)

    emit(root, 0)
    return "".join(out)


def first_sentence(content: str, limit: int = 160) -> str:
    """The first sentence of a memory (outside inline code), on one line, cut at a word boundary."""
    line = ""
    for ln in content.strip().splitlines():
        s = ln.strip()
        if s and not s.startswith(("```", "~~~", "<!--", "---")):
            line = _MARKER.sub("", re.sub(r"^#+\s*|^>\s*", "", s), count=1)
            break
    in_code, end = False, len(line)
    for i, ch in enumerate(line):
        if ch == "`":
            in_code = not in_code
        elif ch in ".!?" and not in_code and (i + 1 == len(line) or line[i + 1] == " "):
            end = i + 1
            break
    sentence = line[:end].strip()
    if len(sentence) > limit:
        sentence = textwrap.shorten(sentence, width=limit, placeholder=" …")
    return sentence
