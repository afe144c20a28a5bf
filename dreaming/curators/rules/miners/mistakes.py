"""Mistakes: a tool error that recurs across tasks, written with the fix a later call made.

Only ``tool_error`` rows are read (``dreaming.signals.failures``: rejections, hook blocks, harness format
errors, expected failures and the agent's own slips are not tool quirks). Errors are grouped by meaning —
the tool (a script by its interpreter), the cause (the error line up to its detail: ``OperationalError:
no such table``) and the fix (``dreaming.signals.fixes``) — so nine spellings of one mistake are one
memory and one masked message with two different fixes (a missing ``MySQLdb``, a missing app folder)
is two. A group is written when its fix held in ``policy.min_sessions`` distinct tasks; an error with no
fix that recurred is not written (precision before recall: "it fails" is not a lesson). The text is an
instruction, with the real error line (no placeholders) and no statistics: support and confidence
live in the memory's fields.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from dreaming import ids, safety
from dreaming.curators.rules.common import _cap, _clean, _confidence, _slug, _sources, _worst, sessions_n
from dreaming.signals import failures, shell

_KIND_RANK = {"setup": 0, "flag": 1, "operand": 2, "line": 3, "swap": 4, "args": 5, "before": 6, "retry": 7}
_IMPORT = re.compile(r"^(?:from \S+ )?import ")
_CAP_ARG = re.compile(r"\(([A-Z]\w*)\)")


def _cause(message: str) -> str:
    """The error line up to its detail: 'OperationalError: no such table', 'Error: payment amount does not
    add up' (a second clause, a quoted value or a placeholder ends it)."""
    m = message or ""
    head = re.split(r"<(?:q|path|id|n|hex|uuid|url)>|[,;(]| - ", m, maxsplit=1)[0]
    parts = head.split(":")
    cause = ":".join(parts[:2]) if len(parts) > 2 else head
    return " ".join(cause.split()).strip(" :.").lower() or m.lower()


def _tool_key(e: dict) -> tuple[str, str]:
    """(grouping key, how the memory names the call). A script is named by its interpreter."""
    label = e.get("failed_tool") or ""
    if ":" not in label:
        return label, f"`{label}`"
    sh = shell.parse(e.get("failed_command"))
    tool = label.split(":", 1)[0]
    if sh.script and sh.program and shell.INTERPRETERS.match(sh.program) and sh.script.endswith((".py", ".js", ".sh")):
        family = re.sub(r"[\d.]+$", "", sh.program)  # python3, python3.11 and python run one kind of script
        return f"{tool}:{family}:script", f"a `{family}` script"
    prog = sh.label or label.split(":", 1)[1]
    sub = next((a for a in sh.argv[1:2] if a and not a.startswith("-") and "/" not in a and len(a) < 20), "")
    return f"{tool}:{prog}", f"`{(prog + ' ' + sub).strip()}`"


_ABS_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:\\|~?/)[^\s'\",:;)]+")


def readable(line: str) -> str:
    """The error line without the machine's paths: cut before the first absolute path when enough is left,
    else the path is shortened to its file name (``/opt/env1/lib/x.py`` -> ``x.py``)."""
    m = _ABS_PATH.search(line)
    if m is None:
        return line
    head = line[: m.start()].rstrip(" :,(in")
    if len(head) >= 20:
        return head
    return _ABS_PATH.sub(lambda h: h.group(0).rstrip("/").rsplit("/", 1)[-1] or "/", line)


def _norm_key(c: dict) -> str:
    if c["kind"] != "line":
        return c["key"]
    return "line:" + _CAP_ARG.sub("(X)", c["key"][5:])  # quoted names stay: `sys.modules['x']` ≠ `['x.y']`


def _shown(k: str, examples: list) -> str:
    """A line as the scripts wrote it when they agree; else its general form (``create_model(…)``)."""
    said = Counter(c["key"][5:] for c, _ in examples)
    top, k_top = said.most_common(1)[0]
    if len(said) == 1 or (k_top >= 0.5 * len(examples) and "(X)" not in k):
        return top
    return k[5:].replace("(X)", "(…)")


def _screen(run, rows: list[dict]) -> list[dict]:
    """dreaming.safety over the rows that could become a memory: an injection, or a fetch-and-run /
    destructive command, in the error, the failed call or the fix is never mined."""
    kept = []
    for e in rows:
        if e.get("injection") or safety.dangerous(e.get("text")) or safety.dangerous(e.get("failed_command")):
            run._mistake_injected.add(e["session_id"])
            continue
        cands = [c for c in e.get("fix_candidates") or [] if not safety.dangerous(c["text"])]
        if len(cands) < len(e.get("fix_candidates") or []):
            run._mistake_unsafe.add(e["session_id"])
        kept.append({**e, "fix_candidates": cands})
    return kept


def mine(run) -> None:
    sig = run.inp.signals
    run._mistake_injected, run._mistake_unsafe = set(), set()
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for e in sig.errors:
        if e.get("session_id") not in run.seen_sessions or e.get("failure_class") not in failures.MINEABLE:
            continue
        if not e.get("fix_candidates") or not e.get("failed_tool"):
            continue
        if run._ignored(e.get("signature") or "", e.get("failed_command") or "", e.get("fix") or ""):
            continue
        groups[(_tool_key(e)[0], _cause(e.get("message") or ""))].append(e)
    found = []
    for gkey in sorted(groups):
        rows = _screen(run, groups[gkey])
        ctx: dict[str, set[str]] = defaultdict(set)
        examples: dict[str, list[tuple[dict, dict]]] = defaultdict(list)
        for e in rows:
            c_of = sig.context_of(e["session_id"])["context"]
            for c in e["fix_candidates"]:
                k = _norm_key(c)
                ctx[k].add(c_of)
                examples[k].append((c, e))
        # a fix that held in enough tasks, counting the store's already-dreamt sessions (context), and that
        # this dream's input shows: what the context alone shows was judged by an earlier dream
        ok = [k for k in ctx if len(ctx[k]) >= run.policy.min_sessions
              and any(e["session_id"] in run.input_sessions for _, e in examples[k])]
        # a fix is a line that does something: a block opener alone (`if not settings.configured:`) or an
        # import alone is not one (they may go with one)
        lead = [k for k in ok if not k.endswith(":") and not (k.startswith("line:") and _IMPORT.match(k[5:]))]
        if not lead:
            continue
        lead.sort(key=lambda k: (-len(ctx[k]), _KIND_RANK[examples[k][0][0]["kind"]], k))
        best = lead[0]
        found.append((-len(ctx[best]), gkey, best, [k for k in ok if k != best], ctx, examples))
    if run._mistake_injected:
        run.notes.append(f"errors whose text carries instructions aimed at the assistant (prompt injection), or a "
                         f"command that fetches and runs code or destroys data, were not mined "
                         f"({sessions_n(len(run._mistake_injected))})")
    if run._mistake_unsafe:
        run.notes.append(f"workarounds that fetch and run code or destroy data were not stated as fixes "
                         f"({sessions_n(len(run._mistake_unsafe))})")
    for _, gkey, best, rest, ctx, examples in sorted(found, key=lambda f: (f[0], f[1]))[: run.policy.max_mistakes]:
        _write(run, gkey, best, rest, ctx, examples)


def _write(run, gkey: tuple, best: str, rest: list[str], ctx: dict, examples: dict) -> None:
    kind = examples[best][0][0]["kind"]
    keys = [best]
    if kind == "line":  # lines added together: the whole change, in script order
        together = [k for k in rest if examples[k][0][0]["kind"] == "line"
                    and len(ctx[k] & ctx[best]) >= 0.6 * len(ctx[best]) and not _IMPORT.match(k[5:])]
        doing = [k for k in together if not k.endswith(":")]
        if len(doing) > 2:  # more changed with it than a memory can state: a half fix is worse than none
            run.notes.append(f"{gkey[1]!r} from {gkey[0]}: the fix changed more than three lines; not written")
            return
        keys += doing
        keys += [k for k in together if k.endswith(":")][:2]  # and the blocks they sit in
        # in the order one script wrote them (the one that added most of these lines), so a block opener stays
        # with the lines it holds; lines that script lacks follow, by their earliest place in any script
        scripts = {id(e): e for k in keys for _, e in examples[k]}.values()
        fullest = max(scripts, key=lambda e: (sum(_norm_key(x) in keys for x in e["fix_candidates"]), e["ts"]))
        in_fullest = {}
        for i, x in enumerate(fullest["fix_candidates"]):
            in_fullest.setdefault(_norm_key(x), i)
        order: dict[str, tuple[int, int]] = {}
        for k in keys:
            pos = [i for c, e in examples[k] for i, x in enumerate(e["fix_candidates"]) if _norm_key(x) == k]
            order[k] = (0, in_fullest[k]) if k in in_fullest else (1, min(pos) if pos else 99)
        keys.sort(key=lambda k: (order[k], k))
    rows = {id(e): e for k in keys for _, e in examples[k]}.values()
    rows = sorted(rows, key=lambda r: (r["ts"], r["session_id"], r["event_id"]))
    tool_name = _tool_key(rows[0])[1]
    lines = Counter(r.get("line") for r in rows if r.get("line"))
    line = sorted(lines.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] if lines else gkey[1]
    key = "mistake:" + ids.sha256_text("\x1f".join((gkey[0].lower(), gkey[1], best)))[:16]
    # the store's memory of this mistake keeps the error line it quotes while that line still occurs: a new
    # most-frequent spelling of the same error ('no such table: __main___user' for '…_article') is no news
    stored = next((m for m in run.live() if m.key == key), None)
    if stored is not None:
        quoted = [ln for ln in lines if f"'{_clean(readable(ln), 160)}'" in stored.content]
        line = min(quoted) if quoted else line
    if kind == "line":
        texts = [_shown(k, examples[k]) for k in keys]
        fix = "add " + ", ".join(f"`{t[:90]}`" for t in texts[:-1]) + (" and " if len(texts) > 1 else "") + \
            f"`{texts[-1][:90]}` to the script before it runs"
    else:
        fix = Counter(c["text"] for c, _ in examples[best]).most_common(1)[0][0]
    n = len(ctx[best])
    content = f"When {tool_name} fails with '{_clean(readable(line), 160)}', {fix}."
    firsts: dict[str, dict] = {}
    for r in rows:
        firsts.setdefault(r["session_id"], r)
    # one source per session, the error; the input's first (``_cap`` keeps the earliest), then the context's
    cap = run.policy.max_evidence
    ev_in = _cap(_sources([r for s, r in firsts.items() if s in run.input_sessions]), cap)
    ev = ev_in + _cap(_sources([r for s, r in firsts.items() if s not in run.input_sessions]), cap - len(ev_in))
    taint = _worst(*(r.get("taint") for r in rows))
    if any(r["session_id"] in run.fetched_at and r.get("fix_ts") is not None
           and r["fix_ts"] >= run.fetched_at[r["session_id"]] for r in rows):
        taint = _worst(taint, "untrusted")  # the agent read external content before this fix
    prog = gkey[0].split(":")[1] if ":" in gkey[0] else gkey[0]
    run._propose(kind="mistake", key=key, path=f"/mistakes/{_slug(prog + ' ' + gkey[1])}.md", content=content,
                 evidence=ev, support=n, confidence=_confidence(n), taint=taint,
                 reason=f"{gkey[1]!r} from {prog} recurs in {n} tasks, fixed the same way ({best})")
