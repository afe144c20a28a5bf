"""Which adapter reads a file: ``--format auto`` sniffs the parsed content, never the file name.

Rules, first match wins, looking at the document and then at its first records:
1. a mini-swe-agent trajectory: ``trajectory_format: mini-swe-agent…`` (or ``instance_id`` +
   ``info`` + ``messages``);
2. Anthropic session events: an object with a dotted ``type`` (``user.message``) and an ``id`` /
   ``processed_at``, or an events page ``{"data": [...]}``;
3. Claude Code JSONL: ``type`` user/assistant/system/summary/file-history-snapshot… with Claude
   Code's ids (``uuid``, ``sessionId``, ``leafUuid``, ``messageId``);
4. OpenAI-style chat: runs with ``traj``, conversations with ``messages``, or messages with ``role``.
Anything else is ``BadInput`` ("unknown transcript format") naming the file and the first line.
"""

from __future__ import annotations

from types import ModuleType

from dreaming.errors import BadInput
from dreaming.ingest import anthropic, claude_code, mini_swe_agent, openai
from dreaming.ingest.common import Source

ADAPTERS: dict[str, ModuleType] = {
    anthropic.FORMAT: anthropic,
    claude_code.FORMAT: claude_code,
    openai.FORMAT: openai,
    mini_swe_agent.FORMAT: mini_swe_agent,
}
FORMATS = tuple(ADAPTERS)
ORDER = (mini_swe_agent, anthropic, claude_code, openai)
SNIFF_RECORDS = 50


def sniff(obj) -> str | None:
    for mod in ORDER:
        if mod.looks_like(obj):
            return mod.FORMAT
    return None


def detect_format(src: Source) -> str:
    """The format name of a parsed source file, or BadInput naming the file."""
    if src.kind == "json" and not isinstance(src.doc, list):
        fmt = sniff(src.doc)
        if fmt:
            return fmt
    for rec in src.records[:SNIFF_RECORDS]:
        fmt = sniff(rec.obj)
        if fmt:
            return fmt
    if not src.records:
        raise BadInput("no records to read (an empty JSON array?)", file=src.name, line=1)
    raise BadInput(
        "unknown transcript format: not Anthropic session events, Claude Code JSONL, OpenAI-style chat "
        "messages or a mini-swe-agent trajectory (pass --format to force one)",
        file=src.name,
        line=src.line_of(src.records[0]) or 1,
    )


def get_adapter(fmt: str) -> ModuleType:
    try:
        return ADAPTERS[fmt]
    except KeyError:
        raise BadInput(f"unknown format {fmt!r}; choose auto or one of {', '.join(FORMATS)}", field="format") from None
