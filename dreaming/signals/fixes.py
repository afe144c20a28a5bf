"""The fix, not the next tool: what changed between a failed call and the call that then succeeded.

For each ``tool_error`` row, ``annotate`` looks for the *retry* — the first later successful call with the
same intent (the same tool; for a shell, the same program or script; within ``GAP`` events) — and
compares the two calls. What it finds is a list of ``fix_candidates`` (each ``{key, text, kind}``), most
telling first:

- ``flag``: an option the retry added (``--settings=test_sqlite``) or dropped;
- ``setup``: a state-changing command run between the two (``pip install x``, ``mkdir app``,
  ``export DJANGO_SETTINGS_MODULE=…``; looking around — ``ls``, ``cat``, ``grep`` — is not setup);
- ``line``: a line of code the retry's script gained (the script rewritten with a heredoc between the
  two runs, or the inline ``-c``/heredoc code itself: ``django.setup()``);
- ``swap``: the same arguments with another program (``python3`` for ``python``);
- ``args``: for a structured tool call, an argument the retry added, or one whose value *class* changed
  (``certificate_…`` -> ``credit_card_…``); a changed list or amount says which argument changed but not
  how, and is no candidate;
- ``retry``: a structured call repeated unchanged, with nothing done in between, succeeded (a transient
  error: rate limit, timeout); ``before``: it succeeded unchanged after another call (that call is the fix,
  unless the error already names it: "Read it first").

No retry, or a retry identical to the failed call (it simply worked the second time), gives no
candidate: the curator then writes no fix, never "use the next tool instead". The first candidate is
also written as ``fix`` (text), ``fix_key`` and ``changed`` (argument names) on the row, with ``fix_cost``:
the calls the agent spent between the failure and the retry, plus its earlier failed attempts at the
same call (0: it fixed it at once).
"""

from __future__ import annotations

import json
import re

from dreaming.signals import failures, shell

GAP = 20
LOOKING = {"ls", "cat", "grep", "egrep", "rg", "find", "nl", "sed", "head", "tail", "less", "more", "wc", "echo",
           "printf", "pwd", "which", "type", "file", "stat", "tree", "diff", "git", "awk", "sort", "uniq", "cut",
           "python", "python3", "write-file", "think", "sleep", "true", "date", "env", "whoami", "id"}
SETUP_PROGRAMS = {"pip", "pip3", "uv", "poetry", "conda", "npm", "yarn", "pnpm", "apt-get", "apt", "brew", "mkdir",
                  "touch", "export", "ln", "chmod", "make", "cargo", "go", "bundle", "gem", "createdb", "docker",
                  "django-admin", "manage.py", "alembic"}
_TRIVIAL_LINE = re.compile(r"^(?:#|print\(|\"\"\"|'''|pass$|else:|try:|except\b|finally:|return\b|import (?:os|sys)$"
                           r"|if __name__|def main\(|main\(\)$|\)$|\]$|\}$|$)")
_FRAGMENT = re.compile(r"[(\[{,\\]$")  # half a statement: `settings.configure(` says nothing alone
_NO_OP_TOOL = re.compile(r"(?i)^(?:think|wait|sleep|noop|no_op)$")
_FLAG_NOISE = re.compile(r"^-(?:v+|q|s|x|-verbose|-verbosity(?:=\d)?|-quiet|-color.*|-tb=.*|-no-header|rA|ra)$")


def _json(text: str | None) -> dict | None:
    if not text or not text.lstrip().startswith("{"):
        return None
    try:
        v = json.loads(text)
    except ValueError:
        return None
    return v if isinstance(v, dict) else None


def _mask_value(v: str) -> str:
    """An argument value with its id part masked (``certificate_7504069`` -> ``certificate_…``)."""
    return re.sub(r"([_-]?)\d[\w-]*$", r"\1…", v) if re.search(r"[A-Za-z]", v) else "…"


def _code_lines(text: str | None) -> list[str]:
    return [ln.strip() for ln in (text or "").splitlines() if ln.strip()]


def _script_body(calls: list[dict], upto: int, script: str | None, inline: tuple[str, ...]) -> list[str]:
    """The code a run executed: its inline code, else the last write of its script before ``upto``."""
    if inline:
        return [ln for c in inline for ln in _code_lines(c)]
    if not script:
        return []
    for c in reversed(calls[:upto]):
        sh = shell.parse(c.get("command"))
        for path, body in sh.writes.items():
            if path.rsplit("/", 1)[-1] == script:
                return _code_lines(body)
    return []


def _short(command: str, limit: int = 80) -> str:
    one = " ".join(command.split())
    return one if len(one) <= limit else one[: limit - 1].rsplit(" ", 1)[0] + " …"


def candidates(calls: list[dict], fi: int, ri: int) -> list[dict]:
    """Fix candidates for the failed call ``calls[fi]`` and its retry ``calls[ri]``."""
    f, r = calls[fi], calls[ri]
    out: list[dict] = []
    fj, rj = _json(f.get("tool_input")), _json(r.get("tool_input"))
    is_shell = ":" in (f.get("label") or "")
    if not is_shell:
        if fj is not None and rj is not None:
            changed = sorted(k for k in set(fj) | set(rj) if fj.get(k) != rj.get(k))
            between = [c for c in calls[fi + 1: ri] if not c.get("failed")
                       and not _NO_OP_TOOL.match((c.get("label") or "").split(":")[0])]
            if not changed and not between:  # retried as it was, nothing done in between: transient
                out.append({"kind": "retry", "key": "retry", "changed": [],
                            "text": "wait and repeat the same call: it succeeded when retried"})
            elif not changed:  # the same call worked after another one: that one is the fix
                tool = between[-1].get("label") or ""
                out.append({"kind": "before", "key": f"before:{tool}", "changed": [],
                            "text": f"call `{tool}` first"})
            elif len(changed) == 1 and isinstance(fj.get(changed[0]), str) and isinstance(rj.get(changed[0]), str):
                k, was, now = changed[0], _mask_value(fj[changed[0]]), _mask_value(rj[changed[0]])
                if was != now:  # a value class the tool refuses (`certificate_…`), not just another id
                    out.append({"kind": "args", "key": f"args:{k}={was}", "changed": changed,
                                "text": f"do not pass `{was}` as `{k}` (the call that then succeeded passed `{now}`)"})
            elif set(changed) <= set(rj) - set(fj):
                names = ", ".join(f"`{k}`" for k in changed[:3])
                out.append({"kind": "args", "key": "args:+" + ",".join(changed), "changed": changed,
                            "text": f"retry `{f['label']}` with {names} added"})
            # other changed values (a list of flights, a payment split) say which argument changed but not how:
            # "check `flights`" is no lesson, and no candidate is made
        return out
    fs, rs = shell.parse(f.get("command")), shell.parse(r.get("command"))
    for flag in [a for a in rs.flags if a not in fs.flags and not _FLAG_NOISE.match(a)]:
        out.append({"kind": "flag", "key": "flag:+" + flag, "changed": [flag], "text": f"pass `{flag}`"})
    old = _script_body(calls, fi, fs.script, fs.codes)
    new = _script_body(calls, ri, rs.script, rs.codes)
    lines = []
    if new and old:
        seen = set(old)
        for ln in new:
            if ln not in seen and not _TRIVIAL_LINE.match(ln) and not _FRAGMENT.search(ln) and len(ln) <= 100:
                lines.append({"kind": "line", "key": "line:" + ln, "changed": [], "text": f"add `{ln}`"})
    setups = _setup(calls, fi, ri)
    if not (lines and setups):  # both changed: neither alone is the fix, and a half fix is worse than none
        out += setups + lines
    suffix = _operand_suffix(fs, rs)
    if suffix:
        was, now = suffix
        out.append({"kind": "operand", "key": f"operand:{was}->{now}", "changed": [],
                    "text": f"use `{now}` instead of `{was}`"})
    if fs.program and rs.program and fs.program != rs.program:
        head = _intent(fs)
        at = _find(rs.argv, head)
        if at is not None:  # `pip install x` -> `uv pip install x`: the words up to the subcommand differ
            a, b = " ".join(head), " ".join(rs.argv[: at + len(head)])
            out.append({"kind": "swap", "key": f"swap:{a}>{b}", "changed": [], "text": f"use `{b}` instead of `{a}`"})
    return out


def _setup(calls: list[dict], fi: int, ri: int) -> list[dict]:
    """State-changing commands run between the failed call and its retry (``pip install x``, ``mkdir app``)."""
    out = []
    for c in calls[fi + 1: ri]:
        if c.get("failed"):
            continue
        cs = shell.parse(c.get("command"))
        prog = cs.program or ""
        if prog in SETUP_PROGRAMS or (cs.script or "") in SETUP_PROGRAMS:
            if prog == "pip" or prog == "pip3" or "install" in cs.argv or prog not in LOOKING:
                out.append({"kind": "setup", "key": "setup:" + _short(" ".join(cs.argv), 60), "changed": [],
                            "text": f"first run `{_short(' '.join(cs.argv))}`"})
    return out


def _operand_suffix(fs: shell.Shell, rs: shell.Shell) -> tuple[str, str] | None:
    """The retry ran the same program with one operand lengthened (`forms` -> `forms_tests`): a naming rule."""
    if fs.label != rs.label or fs.flags != rs.flags:
        return None
    a = [w for w in fs.argv[1:] if not w.startswith("-")]
    b = [w for w in rs.argv[1:] if not w.startswith("-")]
    if len(a) != len(b):
        return None
    diff = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    if len(diff) != 1 or not diff[0][1].startswith(diff[0][0]):
        return None
    was, now = diff[0]
    suffix = now[len(was):].split(".")[0]  # `forms` -> `forms_tests.tests.test_x`: the name took `_tests`
    return (was, was + suffix) if re.fullmatch(r"[\w-]{1,20}", suffix) else None


def _intent(sh: shell.Shell) -> tuple[str, ...]:
    """The program and its subcommand (``pip install``, ``npm test``), without operands or flags."""
    words = [sh.program or ""]
    for a in sh.argv[1:2]:
        if a and not a.startswith("-") and "/" not in a and "=" not in a and "." not in a:
            words.append(a)
    return tuple(words)


def _find(argv: tuple, part: tuple) -> int | None:
    n = len(part)
    for i in range(len(argv) - n + 1):
        if tuple(argv[i:i + n]) == tuple(part) and i > 0:
            return i
    return None


def _same_intent(f: dict, c: dict) -> bool:
    if (f.get("label") or "") == (c.get("label") or ""):
        return True
    fs, cs = shell.parse(f.get("command")), shell.parse(c.get("command"))
    if ":" in (f.get("label") or "") and fs.script and fs.script == cs.script:
        return True  # the same script run with another interpreter
    return bool(fs.program and cs.program and fs.program != cs.program and len(_intent(fs)) > 1
                and _find(cs.argv, _intent(fs)) is not None)


_STATE = re.compile(r"(?i)\b(?:balance|enough|insufficient|limit|exceed\w*|available|remaining|quota|left|full|"
                    r"expired|too (?:many|few|large|small|long))\b")


def _about_the_value(c: dict, line: str) -> bool:
    """A value-class fix (``do not pass certificate_…``) holds when the error is about that kind of value
    ("certificate cannot be used to update reservation"), not about the state of one such value ("gift card
    balance is not enough": another gift card may do)."""
    if c["kind"] != "args" or "=" not in c["key"]:
        return True
    word = c["key"].split("=", 1)[1].rstrip("…").strip("_- ").replace("_", " ").lower()
    return bool(word) and word in line.lower() and not _STATE.search(line)


def _restates(c: dict, line: str) -> bool:
    """A setup step that creates or installs exactly what the error names as missing (``No module named
    'reproduce_app'`` -> ``mkdir reproduce_app``; ``No module named 'x'`` -> ``pip install x``): the error
    message already says it, and no memory is needed."""
    if c["kind"] == "before":  # "File has not been read yet. Read it first": the error says it
        return c["key"].split(":", 1)[1].split(":")[0].lower() in line.lower()
    if c["kind"] != "setup":
        return False
    named = {m.strip("'\"`") for m in re.findall(r"'[^']+'|\"[^\"]+\"|`[^`]+`", line)}
    words = [w for w in c["key"][len("setup:"):].split()[1:] if not w.startswith("-")]
    return any(w.rstrip("/").rsplit("/", 1)[-1].split("==")[0] in named for w in words)


def annotate(errors: list[dict], calls: list[dict]) -> None:
    by_session: dict[str, list[dict]] = {}
    for c in calls:
        by_session.setdefault(c["session_id"], []).append(c)
    index = {sid: {c["seq"]: i for i, c in enumerate(cs)} for sid, cs in by_session.items()}
    # a call whose failure is information (a test run failing on an assertion) did run: the error before it
    # is fixed even though that call "failed"
    ran = {(e["session_id"], e["failed_event_id"]) for e in errors
           if e.get("failure_class") == failures.EXPECTED_FAILURE and e.get("failed_event_id")}
    for e in errors:
        e.update(fix=None, fix_key=None, changed=[], fix_event_id=None, fix_ts=None, fix_candidates=[], fix_cost=None)
        if e.get("failure_class") != failures.TOOL_ERROR or e.get("failed_seq") is None:
            continue
        cs = by_session.get(e["session_id"], [])
        fi = index.get(e["session_id"], {}).get(e["failed_seq"])
        if fi is None:
            continue
        f = cs[fi]
        ri = next((i for i in range(fi + 1, len(cs)) if cs[i]["seq"] - f["seq"] <= GAP
                   and (not cs[i]["failed"] or (e["session_id"], cs[i]["event_id"]) in ran)
                   and _same_intent(f, cs[i])), None)
        if ri is None:
            continue
        line = e.get("line") or ""
        found = [c for c in candidates(cs, fi, ri) if not _restates(c, line) and _about_the_value(c, line)]
        if not found:
            continue
        tries = sum(1 for c in cs[: fi + 1] if c.get("label") == f.get("label") and c.get("failed")
                    and c["seq"] >= f["seq"] - 4 * GAP)  # failed attempts at this call up to this one
        e.update(fix=found[0]["text"], fix_key=found[0]["key"], changed=found[0]["changed"],
                 fix_event_id=cs[ri]["event_id"], fix_ts=cs[ri]["ts"], fix_candidates=found,
                 fix_cost=(ri - fi - 1) + (tries - 1))
