"""The scope's pattern rows in DuckDB, without the dream's full signal extraction: what `outcomes` reads.

``extract_signals`` computes everything a curator reads (fixes, test runs, tainted events, contexts, every
session's tool sequence as Python lists). `outcomes` needs only what ``patterns.SessionPatterns`` groups:
the error rows (class, failed call, masked line), a person's statements and corrections, and, per workflow
memory, which sessions show its n-gram. ``pattern_signals`` builds those with **the dream's own SQL**
(``signals.queries.uses``, ``errors``, ``preferences``, ``user_messages`` and ``signals.people``) over a
slim event table: only the events those queries read (calls, results, errors, a person's messages, outcome
evaluations) and only the columns they read; a shell call's label is computed once per distinct command
(the dream calls the grammar once per call). A workflow key is matched in SQL: the runs of successful calls
(``miners.workflows._runs``: a failed call ends a run, repeats collapse, a recovery run's first call is not
a gram start) as strings, and the memory's n-gram — found by the miner's own ``_grams`` over the sessions
the memory cites — as a substring. ``tests/test_outcomes_keys.py`` checks that every session's keys equal
the ones built from ``extract_signals``, on generated scenarios and on the research transcripts.
"""

from __future__ import annotations

import uuid

import duckdb
import pyarrow as pa

from dreaming import ids
from dreaming.policy import Policy
from dreaming.signals import Signals, _selection, failures, people, queries, shell
from dreaming.signals.patterns import ERROR_TEXT_RE, RESULT_TYPES, SHELL_TOOLS, USE_TYPES, _mask_sql, _sql_list

US = chr(31)
PER_KEY = 4  # up to this many workflow keys are matched one by one, in the sessions that call all their tools


def _slim_events(con: duckdb.DuckDBPyConnection, sel: str, ev: str, labels: str) -> None:
    """The events ``queries.uses``/``errors``/``preferences`` read, with the columns they read, as
    ``queries.prepare`` computes them (the label from a per-command table instead of a UDF call per call)."""
    raw = f"_ok_raw_{ev}"
    con.execute(
        f"""CREATE TEMP TABLE {raw} AS
        WITH base AS (
            SELECT e.agent_id, e.session_id, e.seq, e.event_id, e.ts, e.type, e.role, left(e.text, 4000) AS text,
                   e.tool_name, e.tool_use_id, e.tool_input, coalesce(e.is_error, false) AS is_error,
                   e.type IN {_sql_list(USE_TYPES)} AS is_use,
                   (e.type IN {_sql_list(RESULT_TYPES)} OR (e.role = 'tool' AND e.type NOT IN {_sql_list(USE_TYPES)}))
                       AS is_result,
                   CASE WHEN e.type = 'span.outcome_evaluation_end' AND json_valid(e.raw) THEN e.raw END AS outcome_raw
            FROM events e SEMI JOIN {sel} s ON e.tenant = s.tenant AND e.session_id = s.session_id
        ), flagged AS (
            SELECT *, (NOT is_use) AND (is_error OR type = 'session.error'
                OR (is_result AND regexp_matches(coalesce(text, ''), '{ERROR_TEXT_RE.replace("'", "''")}'))) AS err,
                role = 'user' AND type = 'user.message' AND text IS NOT NULL AS said
            FROM base
        )
        SELECT agent_id, session_id, seq, event_id, ts, type, role, tool_name, tool_use_id, is_use, is_result, err,
               CASE WHEN err OR said THEN text END AS text,
               CASE WHEN is_use THEN left(tool_input, 8000) END AS tool_input,
               CASE WHEN is_use AND lower(tool_name) IN {_sql_list(SHELL_TOOLS)}
                    THEN {queries._command_sql('left(tool_input, 8000)')} END AS command, outcome_raw
        FROM flagged WHERE is_use OR is_result OR err OR said OR outcome_raw IS NOT NULL"""
    )
    cmds = [r[0] for r in con.execute(
        f"SELECT DISTINCT command FROM {raw} WHERE is_use AND lower(tool_name) IN {_sql_list(SHELL_TOOLS)}"
        " AND command IS NOT NULL").fetchall()]
    con.register(labels, pa.table({"command": pa.array(cmds, pa.string()),
                                   "shell": pa.array([shell.label(c) for c in cmds], pa.string())}))
    con.execute(
        f"""CREATE TEMP TABLE {ev} AS
        WITH spelling AS (
            SELECT lower(tool_name) AS lk, arg_min(tool_name, (-n, tool_name)) AS canon
            FROM (SELECT tool_name, count(*) AS n FROM {raw} WHERE is_use AND tool_name IS NOT NULL GROUP BY tool_name)
            GROUP BY lower(tool_name)
        )
        SELECT r.*,
            CASE WHEN is_use THEN coalesce(spelling.canon || coalesce(':' || CASE
                WHEN lower(r.tool_name) IN {_sql_list(SHELL_TOOLS)} THEN l.shell END, ''), r.tool_name) END AS label
        FROM {raw} r LEFT JOIN spelling ON lower(r.tool_name) = spelling.lk
        LEFT JOIN {labels} l ON r.is_use AND l.command = r.command"""
    )
    con.execute(f"DROP TABLE {raw}")


def errors(con: duckdb.DuckDBPyConnection, ev: str) -> list[dict]:
    """``queries.errors`` without what the patterns do not read (the next successful call): the same text
    cleaning, error line, mask and failure class, and the same failed call — by tool-use id the latest such
    call before the error, else, for a tool result, the last call before it — found by joining the few
    error rows to the calls of their sessions instead of an as-of join over every call."""
    program = "coalesce(nullif(regexp_extract(f.failed_tool, ':(.*)$', 1), ''), f.failed_tool)"
    return queries.rows(
        con,
        f"""WITH e AS (
            SELECT *, row_number() OVER () AS rid, {queries.ERROR_TEXT_SQL}
            FROM {ev} WHERE err
        ), e2 AS (
            SELECT *, CASE WHEN rc <> '' THEN 'exit code ' || rc END AS exit_code FROM e
        ), u AS (
            SELECT session_id, seq, tool_use_id, {{'event_id': event_id, 'label': label,
                   'command': coalesce(command, {queries._command_sql('tool_input')})}} AS c
            FROM {ev} WHERE is_use AND session_id IN (SELECT session_id FROM e2)
        ), u1 AS (
            SELECT e2.rid, arg_max(u.c, u.seq) AS c FROM e2 JOIN u ON u.session_id = e2.session_id
                AND u.tool_use_id = e2.tool_use_id AND u.seq < e2.seq GROUP BY e2.rid
        ), u2 AS (
            SELECT e2.rid, arg_max(u.c, u.seq) AS c FROM e2 JOIN u ON u.session_id = e2.session_id
                AND u.seq < e2.seq WHERE e2.is_result GROUP BY e2.rid
        ), failed AS (
            SELECT e2.*, coalesce(u1.c.event_id, CASE WHEN e2.is_result THEN u2.c.event_id END) AS failed_event_id,
                   coalesce(u1.c.label, CASE WHEN e2.is_result THEN u2.c.label END) AS failed_tool,
                   coalesce(u1.c.command, CASE WHEN e2.is_result THEN u2.c.command END) AS failed_command
            FROM e2 LEFT JOIN u1 USING (rid) LEFT JOIN u2 USING (rid)
        ), masked AS (
            SELECT *, {_mask_sql(queries._ERROR_LINE_SQL)} AS message FROM failed
        )
        SELECT f.session_id, f.event_id, f.ts, f.seq, f.text, f.message, f.failed_event_id, f.failed_tool,
               f.failed_command,
               {failures.classify_sql(text="f.t0", is_result="f.is_result", failed_tool="f.failed_tool",
                                      program=program, command="f.failed_command", rc="f.rc")} AS failure_class
        FROM masked f ORDER BY f.session_id, f.seq""",
    )


def _voices(con: duckdb.DuckDBPyConnection, ev: str) -> dict[str, dict]:
    """Per session with a named person: {voice} as ``queries.contexts`` names it (others are 'team')."""
    rows = con.execute(
        f"""WITH per AS (SELECT session_id, arg_max(outcome_raw, seq) FILTER (WHERE outcome_raw IS NOT NULL) AS oraw
                         FROM {ev} WHERE outcome_raw IS NOT NULL GROUP BY session_id)
            SELECT session_id, coalesce('user:' || (oraw->>'$.info.task.user_id'), 'user:' || (oraw->>'$.user_id'),
                                        'task:' || (oraw->>'$.task_id'), 'team') AS voice FROM per"""
    ).fetchall()
    return {sid: {"session_id": sid, "voice": v} for sid, v in rows if v != "team"}


def failed_calls(con: duckdb.DuckDBPyConnection, ev: str, out: str) -> None:
    """``out`` (session_id, seq): the calls ``queries.uses`` marks failed, found from the few error results
    instead of pairing every call: a call is failed when a result it is paired with (the latest call before
    the result with the result's tool-use id) is an error, or when it has no paired result and the next call
    or result after it is an error result."""
    con.execute(
        f"""CREATE TEMP TABLE {out} AS
        WITH r AS (SELECT session_id, seq, tool_use_id FROM {ev} WHERE is_result AND err),
        u AS (SELECT session_id, seq, tool_use_id FROM {ev} WHERE is_use AND session_id IN (SELECT session_id FROM r)),
        a AS (  -- paired with an error result
            SELECT r.session_id, max(u.seq) AS seq FROM r JOIN u ON u.session_id = r.session_id
                AND u.tool_use_id = r.tool_use_id AND u.seq < r.seq GROUP BY r.session_id, r.seq, r.tool_use_id
        ), prev AS (  -- the call or result right before each error result, when it is a call
            SELECT r.session_id, r.seq AS rseq, arg_max({{'seq': x.seq, 'is_use': x.is_use, 'id': x.tool_use_id}}, x.seq)
                       AS p
            FROM r JOIN {ev} x ON x.session_id = r.session_id AND x.seq < r.seq AND (x.is_use OR x.is_result)
            GROUP BY r.session_id, r.seq
        ), cand AS (SELECT DISTINCT session_id, p.seq AS seq, p.id AS tool_use_id FROM prev WHERE p.is_use
        ), rs AS (  -- the results that could pair with a candidate, and the call each pairs with
            SELECT x.session_id, x.seq, x.tool_use_id FROM {ev} x
            SEMI JOIN cand c ON x.session_id = c.session_id AND x.tool_use_id = c.tool_use_id WHERE x.is_result
        ), us AS (
            SELECT x.session_id, x.seq, x.tool_use_id FROM {ev} x
            SEMI JOIN cand c ON x.session_id = c.session_id AND x.tool_use_id = c.tool_use_id WHERE x.is_use
        ), partner AS (
            SELECT rs.session_id, max(us.seq) AS seq FROM rs JOIN us ON us.session_id = rs.session_id
                AND us.tool_use_id = rs.tool_use_id AND us.seq < rs.seq GROUP BY rs.session_id, rs.seq, rs.tool_use_id
        )
        SELECT DISTINCT session_id, seq FROM a
        UNION
        SELECT session_id, seq FROM cand ANTI JOIN partner USING (session_id, seq)"""
    )


def _calls(ev: str, failed: str) -> str:
    """SQL: every call with a label, and whether it failed (``failed_calls``)."""
    return f"""SELECT x.session_id, x.seq, x.label, f.seq IS NOT NULL AS failed FROM {ev} x
               LEFT JOIN {failed} f ON f.session_id = x.session_id AND f.seq = x.seq WHERE x.is_use"""


def _run_strings(calls: str) -> str:
    """SQL: per session and run of successful calls (``workflows._runs``), the lowercased steps a gram may
    start at, joined by US (a recovery run without its first step); only sessions that call every one of
    ``$steps`` (a list parameter) at least once, or every session when it is empty."""
    return f"""WITH c AS ({calls}), pick AS (
            SELECT DISTINCT session_id FROM c WHERE len($steps) = 0
            UNION ALL
            SELECT session_id FROM c WHERE list_contains($steps, lower(label)) GROUP BY session_id
            HAVING count(DISTINCT lower(label)) = len(list_distinct($steps))
        ), u AS (
            SELECT session_id, seq, label, failed,
                   sum(CASE WHEN failed THEN 1 ELSE 0 END) OVER (PARTITION BY session_id ORDER BY seq
                                                              ROWS UNBOUNDED PRECEDING) AS run
            FROM c SEMI JOIN pick USING (session_id) WHERE label IS NOT NULL
        ), ok AS (
            SELECT *, lag(label) OVER (PARTITION BY session_id, run ORDER BY seq) AS prev FROM u WHERE NOT failed
        ), steps AS (
            SELECT *, row_number() OVER (PARTITION BY session_id, run ORDER BY seq) AS i
            FROM ok WHERE prev IS NULL OR prev <> label
        )
        SELECT session_id, '{US}' || string_agg(lower(label), '{US}' ORDER BY seq) || '{US}' AS steps
        FROM steps WHERE run = 0 OR i > 1 GROUP BY session_id, run"""


def _sequences(con: duckdb.DuckDBPyConnection, calls: str, session_ids: list[str] | None) -> list[dict]:
    """The tool sequences (labels and failed flags, as ``Signals.tool_sequences`` holds them) of the given
    sessions (None: every session)."""
    where = "WHERE list_contains(?, session_id)" if session_ids is not None else ""
    rows = con.execute(f"""SELECT session_id, list(label ORDER BY seq), list(failed ORDER BY seq) FROM ({calls}) c
                           {where} GROUP BY session_id""", [sorted(session_ids)] if session_ids is not None else []
                       ).fetchall()
    return [{"session_id": sid, "tools": tools, "tool_events": [{"failed": f} for f in failed]}
            for sid, tools, failed in rows]


def workflow_sessions(con: duckdb.DuckDBPyConnection, ev: str, wanted: dict[str, set[str]],
                      policy: Policy) -> dict[str, set[str]]:
    """workflow key -> the sessions that show it, for ``wanted`` {key: the sessions its memory cites}. The
    key's n-gram comes from the cited sessions (the miner's ``_grams``); it is matched, as a substring of the
    runs, in the sessions that call every tool of it. A key that no cited session rebuilds is looked for in
    every session (the miner's Python over all of them)."""
    from dreaming.outcomes.patterns import workflow_grams

    suffix = uuid.uuid4().hex[:10]
    failed, name = f"_ok_failed_{suffix}", f"_ok_needles_{suffix}"
    out: dict[str, set[str]] = {k: set() for k in wanted}
    failed_calls(con, ev, failed)
    calls = _calls(ev, failed)
    try:
        grams: dict[str, str] = {}
        cited = sorted({s for ss in wanted.values() for s in ss})
        for seq in _sequences(con, calls, cited) if cited else []:
            grams.update(workflow_grams(seq, policy))
        found = {k: g for k, g in grams.items() if k in wanted}
        if len(found) <= PER_KEY:  # a few memories: each in the sessions that call all its tools
            for k, g in found.items():
                for (sid,) in con.execute(f"SELECT DISTINCT session_id FROM ({_run_strings(calls)}) r "
                                          "WHERE contains(r.steps, $needle)",
                                          {"steps": g.split(US), "needle": US + g + US}).fetchall():
                    out[k].add(sid)
        else:  # many: every session's runs once, joined to the n-grams
            con.register(name, pa.table({"key": list(found), "needle": [US + g + US for g in found.values()]}))
            try:
                for k, sid in con.execute(f"SELECT DISTINCT n.key, r.session_id FROM ({_run_strings(calls)}) r "
                                          f"JOIN {name} n ON contains(r.steps, n.needle)", {"steps": []}).fetchall():
                    out[k].add(sid)
            finally:
                con.unregister(name)
        lost = set(wanted) - set(grams)
        if lost:
            for seq in _sequences(con, calls, None):
                for k in set(workflow_grams(seq, policy)) & lost:
                    out[k].add(seq["session_id"])
    finally:
        con.execute(f"DROP TABLE IF EXISTS {failed}")
    return out


def pattern_signals(con, session_ids: list[str], policy: Policy | None = None, *, tenant: str | None = None,
                    workflows: dict[str, set[str]] | None = None) -> tuple[Signals, dict[str, set[str]]]:
    """The ``Signals`` rows ``SessionPatterns`` reads — errors, preferences (with their slot and voice),
    corrections — for ``tenant``'s sessions, and for ``workflows`` ({workflow key: cited sessions}) the
    sessions that show each key. The other fields stay empty."""
    policy = policy or Policy()
    if hasattr(con, "con") and not isinstance(con, duckdb.DuckDBPyConnection):  # a Lake
        con = con.con
    suffix = uuid.uuid4().hex[:10]
    sel, ev, labels = f"_ok_sel_{suffix}", f"_ok_ev_{suffix}", f"_ok_lab_{suffix}"
    con.register(sel, _selection(con, session_ids, tenant))
    try:
        _slim_events(con, sel, ev, labels)
        errs = errors(con, ev)
        preferences = queries.preferences(con, ev, policy.max_preference_chars)
        voices = _voices(con, ev)
        rejected = sorted({e["session_id"] for e in errs if e["failure_class"] == "user_rejection"})
        messages = queries.rows(con, f"""SELECT session_id, event_id, ts, seq, text FROM {ev}
            WHERE role = 'user' AND type = 'user.message' AND text IS NOT NULL AND list_contains(?, session_id)
            ORDER BY session_id, seq""", [rejected]) if rejected else []
        shown = workflow_sessions(con, ev, workflows, policy) if workflows else {}
    finally:
        con.execute(f"DROP TABLE IF EXISTS {ev}")
        for t in (sel, labels):
            try:
                con.unregister(t)
            except Exception:  # noqa: BLE001 - never registered (the slim table failed first)
                pass
    from dreaming.signals import slot_of

    slots: dict[str, dict] = {}  # one statement recurs in many sessions: its slot is read once
    for p in preferences:
        if not p["in_task"]:  # the task text is never a person's statement here (patterns._is_person)
            n = p["normalized"]
            if n not in slots:
                slots[n] = slot_of(n)
            p.update(slots[n])
        p["voice"] = voices.get(p["session_id"], {}).get("voice", "team")
    return Signals(errors=errs, preferences=preferences,
                   corrections=people.corrections(errs, messages, voices)), shown


def workflow_key(gram: str) -> str:
    """The workflows miner's key of a lowercased, US-joined n-gram."""
    return "workflow:" + ids.sha256_text(gram)[:16]
