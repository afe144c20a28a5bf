"""Signals: what both curators read, extracted with DuckDB SQL over the selected sessions.

``extract_signals(con, session_ids, policy, tenant=T) -> Signals`` where ``con`` is a DuckDB
connection on which :class:`dreaming.lake.Lake` defined the ``events`` and ``sessions`` views (a
``Lake`` itself is accepted too). Sessions are selected by (tenant, session id): two tenants may
use the same session ids, and one tenant's dream never reads another's events. Each field is a
list of plain dicts (documented below) so that a curator, a digest for Claude, or a test can read
them directly.

All per-event work (error detection, signature masking, the workaround that followed an error,
preference statements, tool sequences, outcomes) is SQL; Python only post-processes the small
aggregated result (slot keys of preference statements). The rules are documented in
docs/curation.md.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from dreaming.errors import BadInput
from dreaming.policy import Policy


@dataclass
class Signals:
    # one row per error event: session_id, agent_id, event_id, ts, seq, type, tool_name, text, signature
    # (normalised: ids, hex, uuids, numbers, paths, urls and quoted values masked; lowercase), message (the
    # masked error line, case kept), injection (the text carries a prompt-injection phrase), taint, the call
    # that failed (failed_event_id, failed_tool, failed_command), and the workaround that followed:
    # workaround_event_id, workaround_ts, workaround_tool, workaround_input, workaround_command,
    # workaround_text (all None when no successful call followed within policy.workaround_max_gap)
    errors: list[dict] = field(default_factory=list)
    # one row per preference/correction statement by a user: session_id, agent_id, event_id, ts, text,
    # normalized, polarity ('always'|'never'|'prefer'|'correction'), key (slot guess, nullable),
    # value (the preferred option for that slot, nullable), avoid (options the statement rejects),
    # injection (the message carries a prompt-injection phrase: never mined)
    preferences: list[dict] = field(default_factory=list)
    # one row per session: session_id, agent_id, outcome, success (bool|None), tools (list[str]),
    # tool_events (list of {event_id, ts, tool_name, failed}); tools are labelled ``bash:<program>`` for
    # shell tools so that sequences of one generic shell tool still say something
    tool_sequences: list[dict] = field(default_factory=list)
    # one row per session: session_id, agent_id, tenant, started_at, ended_at, events, errors, outcome
    sessions: list[dict] = field(default_factory=list)
    # one row per event that carries tainted content (tool output / fetched pages): session_id,
    # event_id, taint
    tainted_events: list[dict] = field(default_factory=list)
    # one row per user message: session_id, event_id, ts, seq, text (at most 4,000 characters); what
    # dreaming.safety reads to flag injections, also one split across two messages
    user_messages: list[dict] = field(default_factory=list)

    def taint_of(self, session_id: str, event_id: str | None) -> str | None:
        """The taint of one event ('tool_output'), or None when the event is not tainted."""
        idx = getattr(self, "_taint_idx", None)
        if idx is None:
            idx = {(t["session_id"], t["event_id"]): t["taint"] for t in self.tainted_events}
            object.__setattr__(self, "_taint_idx", idx)
        return idx.get((session_id, event_id))


# --- SQL building blocks -------------------------------------------------------------------------

USE_TYPES = ("agent.tool_use", "agent.mcp_tool_use", "agent.custom_tool_use")
RESULT_TYPES = ("agent.tool_result", "agent.mcp_tool_result", "agent.custom_tool_result")
SHELL_TOOLS = ("bash", "shell", "sh", "terminal", "execute_bash", "run_shell_command", "run_command",
               "exec", "local_shell", "run_terminal_cmd", "powershell")
SUCCESS_OUTCOMES = ("satisfied", "success", "succeeded", "resolved", "pass", "passed", "completed", "true")
FAILURE_OUTCOMES = ("failed", "failure", "unresolved", "fail", "error", "not_satisfied", "unsatisfied", "false",
                    "needs_revision", "max_iterations_reached")


# A preference statement is a directive, not any sentence with 'never' in it. Matched on the normalised
# sentence (lowercase, contractions expanded; ':' kept, so a clause after a colon is a new lead):
# - the trigger opens the sentence or a clause after ':' (after courtesy words): always / never / do not /
#   avoid / stop …ing / prefer / please use / make sure / use X instead;
# - 'i/we (would) prefer', 'you should/must (always/never/not)', 'instead of' anywhere;
# - a team convention: 'we/our team (…) always|never|now use …', 'we switched/moved/migrated to …';
# - an imperative that rejects an alternative (OPENER_RE on the normalised sentence and CONTRAST_RE on the
#   lowercased raw one): it opens with an imperative verb or says 'please', and it contrasts with a comma
#   ('X, not Y', 'X, never Y') or says 'rather than' / 'from now on' / 'going forward'
#   ("Use pytest, not unittest, please"; "Use 4 spaces now, never 2");
# - a changed convention: '…, now, not Y' ("Our line limit is 120 characters now, not 88").
_LEAD = (r"(?:^|: )(?:(?:please|also|and|but|so|ok|okay|hey|oh|reminder|note|fyi|remember|from now on|going forward"
         r"|in (?:the )?future)\s*:?\s+)*")
_IMPERATIVE = (r"(?:use|write|keep|put|run|add|set|name|format|indent|sign|call|stick to|switch to|follow|commit"
               r"|test|install|pin|prefix|limit|wrap|default to|only use)")
DIRECTIVE_RE = (
    _LEAD + r"(?:always|never|do not|dont|avoid|stop \w+ing|prefer|please use|make sure|use \S+(?: \S+)? instead)\b"
    r"|\b(?:i|we)(?: would| d)? (?:prefer|like you to|want you to (?:always|never))\b"
    r"|\byou (?:should|must) (?:always|never|not)\b"
    r"|\binstead of\b"
    r"|\b(?:we|our team)(?: \w+)? (?:always|never|now) (?:use|write|run|keep)\b"
    r"|\b(?:we|our team) (?:switched|moved|migrated|changed) (?:over )?to\b"
)
OPENER_RE = _LEAD + _IMPERATIVE + r"\b|\bplease\b"
CONTRAST_RE = r",\s*(?:not|never)\b|\brather than\b|\bfrom now on\b|\bgoing forward\b"
CHANGED_RE = r"\bnow, (?:not|never|no longer)\b"
CORRECTION_RE = r"^(?:no|nope|wrong|actually)\b.*\b(?:use|should|instead|not|prefer)\b"

# Imperative phrases aimed at an AI/memory system: text that carries them is an injection attempt, whoever
# typed it, and is never mined (see docs/curation.md, "Poisoning").
INJECTION_RE = (
    r"(?i)\b(?:ignore|disregard|forget|override) (?:all |any |the )?(?:previous|prior|above|earlier|your|system)"
    r" (?:instructions|prompts?|rules|messages)"
    r"|\b(?:store|save|write|add|put|keep) (?:this|that|the following|it) (?:in|to|into) (?:your |the )?memory"
    r"|\bremember (?:this |that )?for (?:all )?(?:future|later|every) (?:sessions|conversations|runs)"
    r"|\b(?:new|updated) (?:system )?instructions\s*:"
    r"|\byou are now (?:a|an|in)\b"
    r"|\b(?:ai|llm) (?:assistants?|agents?|models?)[, ]+(?:must|should|always)\b"
)


def _sql_list(values: tuple[str, ...]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


# A tool result whose text opens like an error counts as an error even without is_error.
ERROR_TEXT_RE = (
    r"(?i)^\s*(?:error\b|exception\b|fatal\b|traceback \(most recent call last\)|[\w.]*(?:error|exception)\s*:"
    r"|<returncode>\s*[1-9])"
)

# mask(x): the normalisation of error lines, in SQL. Order matters: urls and uuids before paths,
# hex before generic ids, ids before plain numbers.
_MASKS = [
    (r"\b(?:https?|ftp|file)://\S+", "<url>"),
    (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "<uuid>"),
    (r"(^|[\s(\[{=:,])(?:'[^'\n]*'|\"[^\"\n]*\"|`[^`\n]*`)", r"\1<q>"),
    (r"[A-Za-z]:\\[^\s]+", "<path>"),
    (r"(^|[\s(\[{=:,<])(?:~|\.{1,2})?/[\w.@+-]+(?:/[\w.@+-]*)*", r"\1<path>"),
    (r"\b[\w.-]+(?:/[\w.-]+){2,}", "<path>"),
    (r"\b[\w.-]+/[\w.-]+\.[A-Za-z]\w{0,5}\b", "<path>"),
    (r"\b0x[0-9a-fA-F]+\b", "<hex>"),
    (r"\b[0-9a-fA-F]{8,}\b", "<hex>"),
    (r"\b(?:[A-Za-z_]+[0-9]|[0-9]+[A-Za-z_])[\w-]*\b", "<id>"),
    (r"\b\d+(?:\.\d+)*\b", "<n>"),
    (r"\s+", " "),
]


def _mask_sql(expr: str) -> str:
    """The masked line, case kept (signatures lowercase it), at most 200 characters."""
    for pat, rep in _MASKS:
        expr = f"regexp_replace({expr}, '{pat.replace(chr(39), chr(39) * 2)}', '{rep}', 'g')"
    return f"left(trim({expr}), 200)"


def _command_sql(col: str) -> str:
    """The most telling field of a tool input (a shell command, code, query, url, path)."""
    fields = ["command", "cmd", "code", "query", "url", "path", "file_path", "script", "input"]
    picks = ", ".join(f"{col}->>'$.{f}'" for f in fields)
    return (
        f"CASE WHEN {col} IS NULL THEN NULL WHEN json_valid({col}) AND left(ltrim({col}), 1) = '{{' "
        f"THEN coalesce({picks}, left({col}, 200)) ELSE left({col}, 200) END"
    )


# Tool labels: the tool name; for shell tools ``<tool>:<program>``. One tool spelled two ways (Claude
# Code's `Bash`, an API's `bash`) is one tool: labels are grouped case-insensitively and written with
# the spelling most used in the selected sessions (ties: the first in sort order), so that signatures,
# workflows and mined text name the tools the way the transcripts do.
_PROGRAM_SQL = f"""CASE WHEN lower(tool_name) IN {_sql_list(SHELL_TOOLS)} AND command IS NOT NULL
        THEN nullif(regexp_extract(command,
            '^\\s*(?:cd\\s+\\S+\\s*(?:&&|;)\\s*)?(?:sudo\\s+)?(?:[A-Z_][A-Z0-9_]*=\\S+\\s+)*(?:\\S*/)?([\\w.+-]+)', 1), '')
        END"""

_ERROR_LINE_SQL = r"""coalesce(
    list_last(regexp_extract_all(t0, '(?m)(?:^[ \t]*(?:E[ \t]+)?|[ \t])((?:[A-Za-z_]\w*\.)*\w*(?:Error|Exception)\b[^\n]*|(?:[a-z_]\w*\.)+[A-Z]\w*:[ \t][^\n]*)', 1)),
    nullif(regexp_extract(t0, '(?im)^[^\n]*\b(?:error|failed|fatal|denied|not found|no such)\b[^\n]*', 0), ''),
    nullif(regexp_extract(t0, '(?m)^\s*(\S[^\n]*)', 1), ''),
    coalesce(exit_code, 'error'))"""


def _prepare(con: duckdb.DuckDBPyConnection, sel: str, ev: str) -> None:
    con.execute(
        f"""CREATE TEMP TABLE {ev} AS
        WITH base AS (
            SELECT e.tenant, e.agent_id, e.session_id, e.seq, e.event_id, e.ts, e.type, e.role,
                   left(e.text, 4000) AS text, e.tool_name, e.tool_use_id, left(e.tool_input, 4000) AS tool_input,
                   coalesce(e.is_error, false) AS is_error, e.outcome,
                   e.type IN {_sql_list(USE_TYPES)} AS is_use,
                   (e.type IN {_sql_list(RESULT_TYPES)} OR (e.role = 'tool' AND e.type NOT IN {_sql_list(USE_TYPES)}))
                       AS is_result
            FROM events e SEMI JOIN {sel} s ON e.tenant = s.tenant AND e.session_id = s.session_id
        ), cmd AS (
            SELECT *, CASE WHEN is_use THEN {_command_sql('tool_input')} END AS command FROM base
        ), spelling AS (  -- the most used spelling of each tool name, compared case-insensitively
            SELECT lower(tool_name) AS lk, arg_min(tool_name, (-n, tool_name)) AS canon
            FROM (SELECT tool_name, count(*) AS n FROM cmd WHERE is_use AND tool_name IS NOT NULL GROUP BY tool_name)
            GROUP BY lower(tool_name)
        )
        SELECT cmd.*,
            CASE WHEN is_use THEN coalesce(spelling.canon || coalesce(':' || {_PROGRAM_SQL}, ''), tool_name) END
                AS label,
            (NOT is_use) AND (is_error OR type = 'session.error'
                OR (is_result AND regexp_matches(coalesce(text, ''), '{ERROR_TEXT_RE.replace("'", "''")}'))) AS err
        FROM cmd LEFT JOIN spelling ON lower(cmd.tool_name) = spelling.lk"""
    )


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    cur = con.execute(sql, params or [])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def _selection(con: duckdb.DuckDBPyConnection, session_ids: list[str], tenant: str | None) -> pa.Table:
    """The (tenant, session_id) pairs to read. Without a tenant, each id must belong to one tenant."""
    ids_ = sorted(set(session_ids))
    if tenant is not None:
        return pa.table({"tenant": pa.array([tenant] * len(ids_), pa.string()), "session_id": pa.array(ids_, pa.string())})
    rows = con.execute(
        "SELECT DISTINCT tenant, session_id FROM sessions WHERE list_contains(?, session_id) ORDER BY ALL", [ids_]
    ).fetchall()
    owners: dict[str, list[str]] = {}
    for t, sid in rows:
        owners.setdefault(sid, []).append(t)
    shared = sorted(sid for sid, ts in owners.items() if len(ts) > 1)
    if shared:
        raise BadInput(f"session ids {', '.join(shared[:5])} exist in several tenants; name the tenant", field="tenant")
    return pa.table({"tenant": pa.array([t for t, _ in rows], pa.string()),
                     "session_id": pa.array([sid for _, sid in rows], pa.string())})


def extract_signals(con, session_ids: list[str], policy: Policy | None = None, *, tenant: str | None = None) -> Signals:
    """Signals of ``tenant``'s sessions ``session_ids`` (unknown ids are simply absent from the result).

    Every dream passes its store's tenant. Without one (tests, notebooks), an id that two tenants
    use is refused rather than read from both.
    """
    policy = policy or Policy()
    if hasattr(con, "con") and not isinstance(con, duckdb.DuckDBPyConnection):  # a Lake
        con = con.con
    suffix = uuid.uuid4().hex[:10]
    sel, ev, uses = f"_sig_sel_{suffix}", f"_sig_ev_{suffix}", f"_sig_uses_{suffix}"
    con.register(sel, _selection(con, session_ids, tenant))
    try:
        _prepare(con, sel, ev)
        # every tool call with whether it failed: its result by tool_use_id, else the result right after it
        con.execute(
            f"""CREATE TEMP TABLE {uses} AS
            WITH tl AS (
                SELECT *, lead(is_result) OVER w AS next_is_result, lead(err) OVER w AS next_err
                FROM {ev} WHERE is_use OR is_result
                WINDOW w AS (PARTITION BY session_id ORDER BY seq)
            ), by_id AS (
                SELECT session_id, tool_use_id, bool_or(err) AS err
                FROM {ev} WHERE is_result AND tool_use_id IS NOT NULL GROUP BY ALL
            )
            SELECT tl.session_id, tl.agent_id, tl.seq, tl.event_id, tl.ts, tl.tool_use_id, tl.label, tl.command,
                   tl.tool_input, tl.text,
                   coalesce(by_id.err, CASE WHEN tl.next_is_result THEN tl.next_err END, false) AS failed
            FROM tl LEFT JOIN by_id ON tl.session_id = by_id.session_id AND tl.tool_use_id = by_id.tool_use_id
            WHERE tl.is_use"""
        )
        errors = _rows(
            con,
            f"""WITH e AS (
                SELECT *, regexp_extract(coalesce(text, ''), '<returncode>\\s*(\\d+)', 1) AS rc,
                    regexp_replace(regexp_replace(
                        -- a JSON error body (an object with error.message, message, error or detail)
                        -- is reduced to its message
                        CASE WHEN left(ltrim(coalesce(text, '')), 1) = '{{' AND json_valid(text)
                             THEN coalesce(text->>'$.error.message', text->>'$.message', text->>'$.error',
                                           text->>'$.detail', text)
                             ELSE coalesce(text, '') END,
                        '<returncode>\\s*\\d+\\s*</returncode>', '', 'g'),
                                   '</?(?:output|error|stderr|stdout|returncode|warning)>', ' ', 'g') AS t0
                FROM {ev} WHERE err
            ), e2 AS (
                SELECT *, CASE WHEN rc <> '' THEN 'exit code ' || rc END AS exit_code FROM e
            ), failed AS (  -- the call that failed: by tool_use_id, else (for a tool result) the last call
                -- before it; an error that is no tool's result (a harness rejection, session.error) names no call
                SELECT e2.*, coalesce(u1.event_id, CASE WHEN e2.is_result THEN u2.event_id END) AS failed_event_id,
                       coalesce(u1.label, CASE WHEN e2.is_result THEN u2.label END) AS failed_tool,
                       coalesce(u1.command, CASE WHEN e2.is_result THEN u2.command END) AS failed_command
                FROM e2
                LEFT JOIN {uses} u1 ON e2.tool_use_id IS NOT NULL AND u1.session_id = e2.session_id
                     AND u1.tool_use_id = e2.tool_use_id
                ASOF LEFT JOIN {uses} u2 ON u2.session_id = e2.session_id AND e2.seq > u2.seq
            ), masked AS (
                SELECT *, {_mask_sql(_ERROR_LINE_SQL)} AS message FROM failed
            ), ok AS (SELECT * FROM {uses} WHERE NOT failed)
            SELECT f.session_id, f.agent_id, f.event_id, f.ts, f.seq, f.type, f.failed_tool AS tool_name, f.text,
                   lower(coalesce(f.failed_tool || ' | ', '') || f.message) AS signature, f.message,
                   regexp_matches(coalesce(f.text, ''), '{INJECTION_RE}') AS injection,
                   CASE WHEN f.is_result THEN 'tool_output' ELSE 'trusted' END AS taint,
                   f.failed_event_id, f.failed_tool, f.failed_command,
                   w.event_id AS workaround_event_id, w.ts AS workaround_ts, w.label AS workaround_tool,
                   w.tool_input AS workaround_input, w.command AS workaround_command, w.text AS workaround_text
            FROM masked f
            ASOF LEFT JOIN ok w0 ON w0.session_id = f.session_id AND f.seq < w0.seq
            LEFT JOIN ok w ON w.session_id = w0.session_id AND w.seq = w0.seq AND w0.seq - f.seq <= ?
            ORDER BY f.session_id, f.seq""",
            [policy.workaround_max_gap],
        )
        preferences = _rows(
            con,
            f"""WITH s AS (
                SELECT session_id, agent_id, event_id, ts, seq,
                       regexp_matches(text, '{INJECTION_RE}') AS injection,
                       trim(unnest(regexp_extract_all(text, '[^.!?;\\n]+[.!?;]*'))) AS sentence
                FROM {ev} WHERE role = 'user' AND type = 'user.message' AND text IS NOT NULL
            ), n AS (
                SELECT *, trim(regexp_replace(regexp_replace(regexp_replace(lower(sentence),
                           '\\b(do|does|did|can|should|would|is|are)n''?t\\b', '\\1 not', 'g'),
                           '[^\\w\\s./:+#=@-]', ' ', 'g'), '\\s+', ' ', 'g')) AS normalized
                FROM s WHERE length(sentence) BETWEEN 6 AND ? AND NOT ends_with(sentence, '?')
            )
            SELECT session_id, agent_id, event_id, ts, seq, rtrim(sentence, '.!;') AS text,
                rtrim(normalized, '.') AS normalized, injection,
                CASE WHEN regexp_matches(normalized, '{CORRECTION_RE}') THEN 'correction'
                     WHEN regexp_matches(normalized, '\\b(never|do not|does not|dont|stop|avoid|not)\\b') THEN 'never'
                     WHEN regexp_matches(normalized, '\\b(always|must|make sure|please use)\\b') THEN 'always'
                     ELSE 'prefer' END AS polarity
            FROM n
            WHERE regexp_matches(normalized, '{DIRECTIVE_RE}') OR regexp_matches(normalized, '{CORRECTION_RE}')
               OR (regexp_matches(normalized, '{OPENER_RE}') AND regexp_matches(lower(sentence), '{CONTRAST_RE}'))
               OR regexp_matches(lower(sentence), '{CHANGED_RE}')
            ORDER BY session_id, seq, text""",
            [policy.max_preference_chars],
        )
        for p in preferences:
            p.update(slot_of(p["normalized"]))
        sessions = _rows(
            con,
            f"""SELECT tenant, agent_id, session_id, started_at, ended_at, events, tool_calls, errors, outcome
                FROM sessions SEMI JOIN {sel} s USING (tenant, session_id) ORDER BY session_id, tenant"""
        )
        tool_sequences = _rows(
            con,
            f"""WITH per AS (
                SELECT session_id, any_value(agent_id) FILTER (WHERE agent_id IS NOT NULL) AS agent_id,
                       arg_max(outcome, seq) FILTER (WHERE outcome IS NOT NULL) AS outcome,
                       max(seq) FILTER (WHERE type = 'session.error') AS last_session_error
                FROM {ev} GROUP BY session_id
            ), tl AS (
                SELECT session_id, list(label ORDER BY seq) AS tools,
                       list({{'event_id': event_id, 'ts': ts, 'tool_name': label, 'failed': failed}} ORDER BY seq) AS tool_events,
                       arg_max(failed, seq) AS last_failed, max(seq) AS last_use
                FROM {uses} GROUP BY session_id
            )
            SELECT per.session_id, per.agent_id, per.outcome,
                CASE WHEN lower(per.outcome) IN {_sql_list(SUCCESS_OUTCOMES)} THEN true
                     WHEN lower(per.outcome) IN {_sql_list(FAILURE_OUTCOMES)} THEN false
                     WHEN try_cast(per.outcome AS DOUBLE) IS NOT NULL THEN try_cast(per.outcome AS DOUBLE) >= ?
                     WHEN tl.session_id IS NULL THEN NULL
                     ELSE NOT tl.last_failed AND coalesce(per.last_session_error < tl.last_use, true) END AS success,
                coalesce(tl.tools, []) AS tools, coalesce(tl.tool_events, []) AS tool_events
            FROM per LEFT JOIN tl USING (session_id) ORDER BY per.session_id""",
            [policy.success_reward],
        )
        tainted = _rows(
            con, f"SELECT session_id, event_id, 'tool_output' AS taint FROM {ev} WHERE is_result ORDER BY session_id, seq"
        )
        user_messages = _rows(
            con, f"""SELECT session_id, event_id, ts, seq, text FROM {ev}
                WHERE role = 'user' AND type = 'user.message' AND text IS NOT NULL ORDER BY session_id, seq"""
        )
    finally:
        for t in (ev, uses):
            con.execute(f"DROP TABLE IF EXISTS {t}")
        con.unregister(sel)
    return Signals(errors=errors, preferences=preferences, tool_sequences=tool_sequences, sessions=sessions,
                   tainted_events=tainted, user_messages=user_messages)


# --- preference slots (Python over the few matched sentences) -----------------------------------

SLOTS: dict[str, list[str]] = {
    "package-manager": ["uv", "pip", "pipenv", "poetry", "conda", "pdm", "hatch", "npm", "yarn", "pnpm", "bun"],
    "test-runner": ["pytest", "unittest", "nose", "jest", "vitest", "mocha"],
    "formatter": ["black", "ruff format", "prettier", "autopep8", "yapf", "gofmt"],
    "linter": ["ruff", "flake8", "pylint", "eslint", "mypy", "pyright"],
    "indentation": ["tabs", "spaces", "2 spaces", "4 spaces", "8 spaces"],
    "quotes": ["single quotes", "double quotes"],
    "editor": ["vim", "neovim", "emacs", "nano", "vscode"],
    "shell": ["bash", "zsh", "fish"],
    "vcs-branch": ["main", "master", "develop", "trunk"],
    "commit-style": ["conventional commits", "imperative"],
    "merge-strategy": ["squash", "rebase", "merge commits"],
    "language": ["english", "french", "german", "spanish", "japanese", "chinese"],
    "seat": ["window seat", "aisle seat", "middle seat"],
    "cabin": ["basic economy", "economy", "business", "first class"],
    "payment": ["credit card", "gift card", "travel certificate", "paypal", "debit card"],
}
_NEG_BEFORE = re.compile(r"\b(never|not|no|stop|avoid|without|instead of|rather than|dont)\b(?:\s+\S+){0,2}\s*$")
_SLOT_RES = {
    slot: re.compile(r"\b(" + "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)) + r")\b")
    for slot, terms in SLOTS.items()
}
_CORRECTION = re.compile(r"^(?:no|nope|wrong|actually)\b\W*")
_PORT = re.compile(r"\bport\s+(\d{2,5})\b")
# "4-space indentation", "indent with 2-spaces" -> "4 spaces"; "one tab" -> "tabs"
_N_SPACES = re.compile(r"\b(\d)[ -]spaces?\b")
# line length: a sentence about lines / line length / line limit with a number of characters
# ("line length/limit/width" and any number of 40-400; or "lines" with a number of characters/columns or
# "lines under/at most/below N"; "functions under 50 lines" is not about line length)
_LINE_TOPIC = re.compile(r"\bline[ -]?(?:length|limit|width)\b|\bmax[ -]line[ -]length\b")
_LINE_NUM = re.compile(r"\b(\d{2,3})\b")
_LINES_NUM = re.compile(r"\blines?\b.*?(?:\b(\d{2,3})[ -]?(?:characters?|chars?|columns?|cols?)\b"
                        r"|\b(?:under|below|within|at most|max|shorter than|no longer than|to|<=?)\s*(\d{2,3})\b)")


def slot_of(normalized: str) -> dict:
    """Guess the slot a preference statement fills: {'key', 'value', 'avoid'} (all None/[] when unknown).

    A term counts as rejected when 'never/not/no/stop/avoid/without/instead of/rather than' stands
    within three words before it; the first term that is not rejected is the value.
    """
    normalized = _CORRECTION.sub("", normalized)  # "no, use X" rejects what came before, not X
    m = _PORT.search(normalized)
    if m:
        return {"key": "pref:port", "value": m.group(1), "avoid": []}
    normalized = _N_SPACES.sub(lambda m: f"{m.group(1)} spaces", normalized)
    if _LINE_TOPIC.search(normalized) or _LINES_NUM.search(normalized):
        nums = [h for h in _LINE_NUM.finditer(normalized) if 40 <= int(h.group(1)) <= 400]
        if nums:
            pos = [h.group(1) for h in nums if not _NEG_BEFORE.search(normalized[: h.start()])]
            neg = sorted({h.group(1) for h in nums} - set(pos))
            return {"key": "pref:line-length", "value": pos[0] if pos else None, "avoid": neg}
    best = None
    for slot, rx in _SLOT_RES.items():
        hits = list(rx.finditer(normalized))
        if not hits:
            continue
        pos = [h.group(1) for h in hits if not _NEG_BEFORE.search(normalized[: h.start()])]
        neg = sorted({h.group(1) for h in hits} - set(pos))
        cand = (hits[0].start(), slot, pos[0] if pos else None, neg)
        if best is None or cand[0] < best[0]:
            best = cand
    if best is None:
        return {"key": None, "value": None, "avoid": []}
    _, slot, value, neg = best
    return {"key": f"pref:{slot}", "value": value, "avoid": neg}
