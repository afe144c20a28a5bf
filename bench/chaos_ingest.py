"""Ingest under kill -9 and under malformed input: counts, not timings.

    .venv/bin/python bench/chaos_ingest.py [--quick] [--kills N] [--cases N]

(a) **kill -9**: a multi-file ingest (generated Anthropic JSONL, small commit groups so that the
    window between placing files and registering them is hit often) runs as a subprocess and is
    SIGKILLed after delays spread over its measured run time; then recovery runs — ``dreams lake
    fsck`` on even trials, the next ``dreams ingest`` (which runs fsck first) on odd ones — and we
    count what the lake reads against what the catalog registers.
(b) **fuzzing**: ≥ 1,000 malformed inputs over the four adapters (anthropic, claude-code, openai,
    mini-swe-agent): truncations, deleted fields, wrong types at random paths, lone surrogates,
    deep nesting, implausible or unreadable timestamps, unknown/missing types, duplicated lines,
    bad bytes… ingested in one batch; every file must end ingested, skipped or failed with a
    message naming file and line, and every input line must be ingested or reported.

``run(quick) -> dict[str, int]`` is what ``bench/chaos.py`` calls; the test suite runs the quick
subset (tests/test_ingest_chaos.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# `dreams` with small commit groups; CHAOS_SLOW_COMMIT=s makes each catalog insert take s seconds (a
# busy catalog), which widens the window between placing files and registering them
DREAMS = [sys.executable, "-c", """
import os, time
import dreaming.ingest as i
from dreaming.catalog import Catalog
i.COMMIT_GROUP = 4
slow = float(os.environ.get("CHAOS_SLOW_COMMIT") or 0)
if slow:
    real = Catalog.insert_snapshot
    Catalog.insert_snapshot = lambda self, conn, row: (time.sleep(slow), real(self, conn, row))[1]
from dreaming.cli import main
main()
"""]
DAY = "2026-11-02"


# --- (a) kill -9 ----------------------------------------------------------------------------------


def write_corpus(folder: Path, files: int, sessions: int = 6, events: int = 30) -> int:
    """Anthropic JSONL files with distinct sessions; returns the number of sessions."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        lines = []
        for s in range(sessions):
            for i in range(events):
                lines.append(json.dumps({
                    "id": f"sevt_{f}_{s}_{i}", "type": "user.message" if i % 2 == 0 else "agent.message",
                    "session_id": f"sesn_{f}_{s}", "processed_at": f"{DAY}T{s:02d}:{i:02d}:00Z",
                    "content": [{"type": "text", "text": f"message {i} of session {s} in file {f} " * 4}]}))
        (folder / f"f{f:04d}.jsonl").write_text("\n".join(lines) + "\n")
    return files * sessions


def _env(home: Path, slow: float = 0.0) -> dict:
    return {**os.environ, "DREAMS_HOME": str(home), "PYTHONPATH": str(ROOT), "CHAOS_SLOW_COMMIT": str(slow)}


def _ingest_cmd(corpus: Path) -> list[str]:
    return [*DREAMS, "ingest", str(corpus), "--tenant", "chaos", "--json"]


def lake_state(home: Path) -> dict[str, int]:
    """What the lake reads vs what the catalog registers, and what lies around."""
    import pyarrow.parquet as pq

    from dreaming.catalog import Catalog
    from dreaming.lake import Lake
    from dreaming.settings import get_settings

    settings = get_settings(home=home)
    cat = Catalog(settings)
    try:
        snaps = cat.list_snapshots()
    finally:
        cat.engine.dispose()
    registered = {f for s in snaps for f in s["files"]}
    partial = 0
    for s in snaps:
        try:
            rows = sum(pq.ParquetFile(home / f).metadata.num_rows for f in s["files"])
        except Exception:  # noqa: BLE001 - unreadable means partial
            rows = -1
        partial += rows != s["rows"]
    with Lake(settings) as lake:
        read_ids = {r[0] for r in lake.con.execute("select distinct snapshot_id from events").fetchall()}
        visible = lake.con.execute("select count(*) from sessions").fetchall()[0][0]
    on_disk = {p.relative_to(home).as_posix() for p in (home / "transcripts").rglob("*") if p.is_file()} \
        if (home / "transcripts").exists() else set()
    staging = [p for p in (home / "_staging").rglob("*") if p.is_file()] if (home / "_staging").exists() else []
    return {"snapshots": len(snaps), "sessions_registered": sum(s["sessions"] for s in snaps),
            "sessions_visible": visible, "unregistered_read": len(read_ids - {s["id"] for s in snaps}),
            "partial_registered": partial, "unregistered_on_disk": len(on_disk - registered),
            "staging_files": len(staging)}


def kill_trials(work: Path, kills: int, files: int, seed: int = 0) -> dict[str, int]:
    rng = random.Random(seed)
    corpus = work / "corpus"
    total_sessions = write_corpus(corpus, files)
    calib = work / "calibrate"
    t0 = time.perf_counter()
    subprocess.run(_ingest_cmd(corpus), env=_env(calib), capture_output=True, check=True, timeout=600)
    duration = time.perf_counter() - t0
    shutil.rmtree(calib)
    out = {"kill_trials": 0, "killed_mid_run": 0, "left_orphans_before_recovery": 0, "left_staging_before_recovery": 0,
           "quarantined": 0, "unregistered_read": 0, "partial_read": 0, "stale_staging_after_recovery": 0,
           "unregistered_after_recovery": 0, "sessions_visible_not_registered": 0, "final_ingest_incomplete": 0}
    for k in range(kills):
        home = work / f"lake{k}"
        # spread the kills over the run (start-up included), jittered
        delay = duration * (0.15 + 0.8 * (k + rng.random()) / kills)
        # every third trial with a slow catalog: kills then land between placing and registering
        p = subprocess.Popen(_ingest_cmd(corpus), env=_env(home, 0.05 if k % 3 == 2 else 0.0), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(delay)
        with_kill = p.poll() is None
        if with_kill:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        out["kill_trials"] += 1
        out["killed_mid_run"] += with_kill  # the others had finished before the kill came
        before = lake_state(home) if home.exists() else None
        if before:
            out["left_orphans_before_recovery"] += before["unregistered_on_disk"]
            out["left_staging_before_recovery"] += before["staging_files"]
            out["unregistered_read"] += before["unregistered_read"]
            out["partial_read"] += before["partial_registered"]
            out["sessions_visible_not_registered"] += max(0, before["sessions_visible"] - before["sessions_registered"])
        if k % 2 == 0:  # recovery by fsck, then a complete ingest
            r = subprocess.run([*DREAMS, "lake", "fsck", "--json"], env=_env(home), capture_output=True, text=True,
                               timeout=300)
            rep = json.loads(r.stdout) if r.stdout.strip() else {"quarantined": []}
            out["quarantined"] += len(rep["quarantined"])
            after = lake_state(home)
            final = subprocess.run(_ingest_cmd(corpus), env=_env(home), capture_output=True, text=True, timeout=600)
        else:  # recovery by the next ingest
            final = subprocess.run(_ingest_cmd(corpus), env=_env(home), capture_output=True, text=True, timeout=600)
            rec = (json.loads(final.stdout).get("recovery") or {}) if final.stdout.strip() else {}
            out["quarantined"] += len(rec.get("quarantined", []))
            after = lake_state(home)
        out["stale_staging_after_recovery"] += after["staging_files"]
        out["unregistered_after_recovery"] += after["unregistered_on_disk"]
        end = lake_state(home)
        out["unregistered_read"] += end["unregistered_read"]
        out["partial_read"] += end["partial_registered"]
        if final.returncode != 0 or end["sessions_visible"] != total_sessions:
            out["final_ingest_incomplete"] += 1
        shutil.rmtree(home, ignore_errors=True)
    return out


# --- (b) fuzzing ------------------------------------------------------------------------------------


def base_docs() -> dict[str, tuple[str, list]]:
    """Per adapter: (container kind, records) of a small valid transcript."""
    t = [f"2026-11-02T10:{i:02d}:00Z" for i in range(10)]
    anth = [{"id": f"sevt_{i}", "type": ty, "session_id": "sesn_1", "processed_at": t[i], **extra}
            for i, (ty, extra) in enumerate([
                ("user.message", {"content": [{"type": "text", "text": "please deploy"}]}),
                ("agent.tool_use", {"name": "bash", "input": {"command": "make deploy"}}),
                ("agent.tool_result", {"tool_use_id": "sevt_1", "is_error": True,
                                       "content": [{"type": "text", "text": "Error: denied"}]}),
                ("agent.message", {"content": [{"type": "text", "text": "done"}]}),
                ("span.outcome_evaluation_end", {"result": "satisfied", "explanation": "ok"})])]
    cc = [{"type": "summary", "summary": "s", "leafUuid": "u0"}]
    for i, (ty, content) in enumerate([
            ("user", "fix the test"),
            ("assistant", [{"type": "text", "text": "looking"},
                           {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "pytest"}}]),
            ("user", [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "1 failed", "is_error": True}]),
            ("assistant", "fixed")]):
        cc.append({"type": ty, "uuid": f"u{i + 1}", "sessionId": "s1", "timestamp": t[i],
                   "message": {"role": ty, "content": content}})
    oa = [{"task_id": 1, "trial": 0, "reward": 1.0, "info": {}, "traj": [
        {"role": "system", "content": "policy"}, {"role": "user", "content": "cancel R1"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "cancel", "arguments": "{\"id\": \"R1\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "name": "cancel", "content": "Error: not found"},
        {"role": "assistant", "content": "sorry"}]}]
    msw = [{"instance_id": "django__1", "trajectory_format": "mini-swe-agent-1", "info": {"exit_status": "Submitted"},
            "messages": [{"role": "system", "content": "you are"}, {"role": "user", "content": "fix bug"},
                         {"role": "assistant", "content": "THOUGHT\n```bash\nls\n```",
                          "extra": {"response": {"created": 1764000000}}},
                         {"role": "user", "content": "<returncode>0</returncode><output>a</output>"}]}]
    return {"anthropic": ("jsonl", anth), "claude-code": ("jsonl", cc), "openai": ("json", oa),
            "mini-swe-agent": ("json1", msw)}


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _set(obj, path, value, delete=False):
    for p in path[:-1]:
        obj = obj[p]
    if delete:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


def _deep(n: int):
    v: object = "x"
    for _ in range(n):
        v = [v]
    return v


BAD_TIMES = [-1, 0, 1.5, "0001-01-01T00:00:00Z", "1900-01-01T00:00:00Z", "1970-01-01T00:00:00Z",
             "2126-01-01T00:00:00Z", "2199-06-01T00:00:00Z", "9999-12-31T23:59:59Z", "not a date", 1e20,
             "2026-13-45T00:00:00Z", True, [], {}]
WRONG = [["a", "b"], {"k": "v"}, 12345, 2**70, True, None, 1.5, "", "\ud800", _deep(30)]
TS_KEYS = {"processed_at", "timestamp", "created"}


def _serialize(kind: str, recs: list) -> str:
    if kind == "jsonl":
        text = "".join(json.dumps(r) + "\n" for r in recs)
    else:
        text = json.dumps(recs if kind == "json" else recs[0], indent=1)
    # deep nesting is spliced in as text (json.dumps itself cannot write it)
    return re.sub(r'"@@DEEP(\d+)@@"', lambda m: "[" * int(m[1]) + '"x"' + "]" * int(m[1]), text)


def fuzz_cases(n: int, seed: int = 1) -> list[tuple[str, str, bytes]]:
    """``n`` (adapter, mutation, file bytes) cases, round-robin over the adapters."""
    import copy

    rng = random.Random(seed)
    bases = base_docs()
    fmts = sorted(bases)
    muts = ["truncate", "delete", "wrong_type", "surrogate", "deep", "bad_time", "type", "duplicate",
            "bytes", "container", "session_id", "crlf_bom"]
    cases = []
    for k in range(n):
        fmt = fmts[k % len(fmts)]
        mut = muts[(k // len(fmts)) % len(muts)]
        kind, recs = bases[fmt]
        recs = copy.deepcopy(recs)
        paths = [p for p in _paths(recs) if len(p) >= 2]
        data: bytes | None = None
        if mut == "truncate":
            text = _serialize(kind, recs).encode()
            data = text[: rng.randrange(1, len(text))]
        elif mut == "delete":
            _set(recs, rng.choice(paths), None, delete=True)
        elif mut == "wrong_type":
            _set(recs, rng.choice(paths), rng.choice(WRONG))
        elif mut == "surrogate":
            strs = [p for p in paths if isinstance(_get(recs, p), str)]
            p = rng.choice(strs)
            s = _get(recs, p)
            _set(recs, p, s[: len(s) // 2] + rng.choice(["\ud83d", "\ude00", "\udfff"]) + s[len(s) // 2:])
        elif mut == "deep":
            _set(recs, rng.choice(paths), f"@@DEEP{rng.choice([300, 1000, 1100, 1500])}@@")
        elif mut == "bad_time":
            tps = [p for p in paths if p[-1] in TS_KEYS] or paths
            _set(recs, rng.choice(tps), rng.choice(BAD_TIMES))
        elif mut == "type":
            tps = [p for p in paths if p[-1] in ("type", "role")] or paths
            p = rng.choice(tps)
            if rng.random() < 0.3:
                _set(recs, p, None, delete=True)
            else:
                _set(recs, p, rng.choice(["user.bogus", "bogus", "", "USER", "agent", 7, None]))
        elif mut == "duplicate" and kind == "jsonl":
            i = rng.randrange(len(recs))
            recs.insert(rng.randrange(len(recs) + 1), copy.deepcopy(recs[i]))
        elif mut == "duplicate":
            _set(recs, rng.choice(paths), copy.deepcopy(_get(recs, rng.choice(paths))))
        elif mut == "bytes":
            text = bytearray(_serialize(kind, recs).encode())
            for _ in range(rng.randint(1, 3)):
                text[rng.randrange(len(text))] = rng.choice([0x00, 0xff, 0xc3, 0x80, ord("{"), ord('"')])
            data = bytes(text)
        elif mut == "container":
            data = rng.choice([b"", b"  \n", b"[]", b"{}", b"null", b"1", b"[[]]", b'{"data": []}',
                               b'"just a string"', b"[1, 2, 3]", b"\n\n{}\n"])
        elif mut == "session_id":
            sp = [p for p in paths if p[-1] in ("session_id", "sessionId", "instance_id", "task_id")] or paths
            p = rng.choice(sp)
            if rng.random() < 0.4:
                _set(recs, p, None, delete=True)
            else:
                _set(recs, p, rng.choice(["", 123, None, ["s"], "   "]))
        elif mut == "crlf_bom":
            data = ("\ufeff" + _serialize(kind, recs).replace("\n", "\r\n")).encode()
        if data is None:
            data = _serialize(kind, recs).encode()  # ASCII: json.dumps escapes lone surrogates as \\udxxx
        cases.append((fmt, mut, data))
    return cases


def _get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


def _input_lines(data: bytes) -> list[tuple[int, str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return []
    return [(n, ln.strip()) for n, ln in enumerate(text.split("\n"), 1) if ln.strip()]


EXAMPLES: list[tuple] = []  # (what, file, detail) of the cases that missed a target, for a person to read


def classify(p: Path, res, acc, raws: set) -> tuple[str, object]:
    """The outcome of one fuzzed file: a count name of ``fuzz``'s table, and what went wrong.

    ``acc`` is the result that accounts for the file's lines (itself, or for a skipped twin the
    file it repeats); ``raws`` the ``raw`` values the lake holds for that snapshot."""
    if res.status == "failed":
        err = res.error or ""
        if "internal error" in err or "Traceback" in err or not err.startswith(f"{p}"):
            return "internal_errors", err
        if err.startswith(f"{p}:") and err[len(str(p)) + 1:].split(":", 1)[0].isdigit():
            return ("refused_with_field" if "(field " in err else "refused_naming_file_and_line"), err
        return "refused_without_line", err
    if p.suffix == ".jsonl":  # every line: ingested (its raw is in the lake), reported, or counted as ignored
        reported = {i["line"] for i in acc.issues}
        unmatched = [n for n, ln in _input_lines(p.read_bytes()) if ln not in raws and n not in reported]
        if len(unmatched) > sum(acc.ignored.values()):
            return "silent_drops", unmatched
    if res.status == "skipped":
        return "skipped_files", None
    return ("ingested_with_reported_lines" if res.issues else "ingested"), None


def fuzz(work: Path, n: int) -> dict[str, int]:
    from dreaming.catalog import Catalog
    from dreaming.ingest import ingest_files
    from dreaming.lake import Lake
    from dreaming.settings import get_settings

    cases = fuzz_cases(n)
    src = work / "fuzz"
    src.mkdir(parents=True)
    paths = []
    for k, (fmt, mut, data) in enumerate(cases):
        p = src / f"{k:05d}-{fmt}-{mut}.{'jsonl' if base_docs()[fmt][0] == 'jsonl' else 'json'}"
        p.write_bytes(data)
        paths.append(p)
    settings = get_settings(home=work / "fuzz-lake")
    cat = Catalog(settings)
    out = {"fuzz_cases": n, "internal_errors": 0, "refused_naming_file_and_line": 0, "refused_with_field": 0,
           "refused_without_line": 0, "ingested": 0, "ingested_with_reported_lines": 0, "skipped_files": 0,
           "silent_drops": 0}  # refused_naming_file_and_line includes refused_with_field; ingested the other
    try:
        try:
            report = ingest_files(paths, cat, tenant="fuzz")
        except Exception:  # noqa: BLE001 - a traceback escaping the batch: count every file
            out["internal_errors"] = n
            return out
        with Lake(settings) as lake:  # what the lake reads, before the events view dedupes across files
            raws: dict[str, set] = {}
            if lake.files:
                for sid, raw in lake.con.execute("select snapshot_id, raw from read_parquet(?)",
                                                 [lake.files]).fetchall():
                    raws.setdefault(sid, set()).add(raw)
        first = {r.snapshot_id: r for r in report.ingested}
        for p, res in zip(paths, report.files, strict=True):
            verdict, detail = classify(p, res, first.get(res.snapshot_id, res), raws.get(res.snapshot_id, set()))
            out[verdict] += 1
            if verdict == "ingested_with_reported_lines":
                out["ingested"] += 1
            if verdict == "refused_with_field":
                out["refused_naming_file_and_line"] += 1
            if verdict in ("internal_errors", "silent_drops", "refused_without_line"):
                EXAMPLES.append((verdict, p.name, detail))
    finally:
        cat.engine.dispose()
    return out


def run(quick: bool = False, kills: int | None = None, cases: int | None = None) -> dict[str, int]:
    work = Path(tempfile.mkdtemp(prefix="dreams-chaos-ingest-"))
    try:
        counts = kill_trials(work, kills or (2 if quick else 12), files=24 if quick else 120)
        counts.update(fuzz(work, cases or (120 if quick else 1200)))
        return counts
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--kills", type=int)
    ap.add_argument("--cases", type=int)
    args = ap.parse_args()
    counts = run(args.quick, args.kills, args.cases)
    print("| check | count |\n|---|---:|")
    for k, v in counts.items():
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
