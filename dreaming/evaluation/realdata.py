"""`dreams eval --real PATH`: dream over a real transcript set and report what was mined.

- tau-bench (``*.json`` of trajectories) and SWE-bench mini-swe-agent folders (``*.traj.json``): ingest
  with the normal adapters (``--format auto``), dream once over an empty store, and list what was
  mined with its support (distinct sessions), each scored against the labelled real-data set
  (``labels.py``: precision per data set, unlabelled memories listed to label).
- LoCoMo (a folder with ``conversations/<n>.json``, or one such file): each conversation becomes one
  tenant whose sessions are written as Anthropic session-event JSONL by ``locomo_to_events`` (the
  adapter below) and ingested like any export; one dream per conversation; the promoted store is cut
  to token budgets and scored by how many of each question's evidence dialog ids its ``sources``
  still cite, next to LoCoMo's own observations and session summaries cut to the same budgets.

Token estimate: ``ceil(len(text) / 4)`` (documented in docs/eval.md; no tokenizer is needed offline).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dreaming.atomic import write_text_atomic
from dreaming.errors import BadInput
from dreaming.models import Memory
from dreaming.settings import get_settings, use_lake

BUDGETS = (500, 1000, 2000, 4000)
_SESSION = re.compile(r"^session_(\d+)$")
_DIA = re.compile(r"D\d+:\d+")


def tokens(text: str) -> int:
    """Token estimate used for every budget here: ceil(characters / 4)."""
    return math.ceil(len(text) / 4)


# --- LoCoMo adapter -------------------------------------------------------------------------------


def is_locomo(path: Path) -> bool:
    path = Path(path)
    if path.is_dir():
        return (path / "conversations").is_dir() or any(path.glob("*.json")) and _looks_locomo(next(path.glob("*.json")))
    return path.suffix == ".json" and _looks_locomo(path)


def _looks_locomo(f: Path) -> bool:
    try:
        with open(f, encoding="utf-8") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return '"speaker_a"' in head or '"session_1"' in head


def locomo_files(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    folder = path / "conversations" if (path / "conversations").is_dir() else path
    return sorted(folder.glob("*.json"), key=lambda p: (len(p.stem), p.stem))


def parse_locomo_time(text: str, where: str) -> datetime:
    """'1:56 pm on 8 May, 2023' → aware UTC datetime."""
    try:
        return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)
    except ValueError:
        raise BadInput(f"unreadable LoCoMo date_time {text!r}", field=where) from None


def locomo_to_events(conv: dict, conv_id: str) -> dict[str, list[dict]]:
    """One LoCoMo conversation → {session_id: [Anthropic session events]}.

    ``speaker_a``'s turns become ``user.message`` and ``speaker_b``'s ``agent.message`` (each text is
    prefixed with the speaker's name, so memories say who said it); the event ``id`` is the dialog id
    (``D3:12``), so a memory's ``sources[].event_id`` is directly a LoCoMo evidence id; turn ``i`` of
    a session is stamped ``session_<k>_date_time + 30 s × i``; image captions are appended as
    ``[shares a photo: …]``.
    """
    out: dict[str, list[dict]] = {}
    a = conv.get("speaker_a")
    for key in sorted((k for k in conv if _SESSION.match(k)), key=lambda k: int(_SESSION.match(k).group(1))):
        k = int(_SESSION.match(key).group(1))
        turns = conv[key] or []
        if not turns:
            continue
        start = parse_locomo_time(conv.get(f"session_{k}_date_time") or "", f"{conv_id}.session_{k}_date_time")
        sid = f"locomo-{conv_id}-s{k:02d}"
        events = []
        for i, t in enumerate(turns):
            text = f"{t['speaker']}: {t.get('text', '')}"
            if t.get("blip_caption"):
                text += f" [shares a photo: {t['blip_caption']}]"
            ts = (start + timedelta(seconds=30 * i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            events.append({"id": t["dia_id"], "session_id": sid, "processed_at": ts,
                           "type": "user.message" if t["speaker"] == a else "agent.message",
                           "content": [{"type": "text", "text": text}]})
        out[sid] = events
    return out


def write_locomo_jsonl(conv: dict, conv_id: str, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for sid, events in locomo_to_events(conv, conv_id).items():
        p = folder / f"{sid}.jsonl"
        p.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), encoding="utf-8")
        paths.append(p)
    return paths


# --- budgets and evidence coverage (pure) ---------------------------------------------------------


def cut_to_budget(units: list[tuple[str, set[str]]], budget: int) -> list[tuple[str, set[str]]]:
    """The longest prefix of ``units`` (text, cited ids) whose estimated tokens fit ``budget``."""
    out, used = [], 0
    for text, cited in units:
        t = tokens(text)
        if used + t > budget:
            break
        out.append((text, cited))
        used += t
    return out


def store_units(memories: list[Memory]) -> list[tuple[str, set[str]]]:
    """Store memories ordered by support, then confidence (then path), with the dialog ids they cite."""
    ordered = sorted(memories, key=lambda m: (-m.support, -m.confidence, m.path))
    return [(m.content, {s.event_id for s in m.sources if s.event_id}) for m in ordered]


def observation_units(conv: dict) -> list[tuple[str, set[str]]]:
    """LoCoMo's ``session_<k>_observation`` items in session order, each citing its dialog ids."""
    out = []
    for k in _session_numbers(conv):
        for _speaker, items in (conv.get(f"session_{k}_observation") or {}).items():
            for item in items:
                text, ref = item[0], item[1] if len(item) > 1 else ""
                refs = ref if isinstance(ref, list) else [ref]
                out.append((text, {d for r in refs for d in _DIA.findall(str(r))}))
    return out


def summary_units(conv: dict) -> list[tuple[str, set[str]]]:
    """LoCoMo's ``session_<k>_summary`` texts in session order; a summary cites every dialog id of its
    session (it names none itself, so this is generous to the summaries)."""
    out = []
    for k in _session_numbers(conv):
        text = conv.get(f"session_{k}_summary")
        if text:
            out.append((text, {t["dia_id"] for t in conv.get(f"session_{k}") or []}))
    return out


def _session_numbers(conv: dict) -> list[int]:
    return sorted(int(m.group(1)) for k in conv if (m := _SESSION.match(k)))


def evidence_coverage(qa: list[dict], cited: set[str]) -> dict[str, dict]:
    """Per question category: mean share of each question's evidence ids in ``cited`` (and the count)."""
    per: dict[str, list[float]] = defaultdict(list)
    for q in qa:
        ev = {d for e in q.get("evidence") or [] for d in _DIA.findall(str(e))}
        if ev:
            per[str(q.get("category"))].append(len(ev & cited) / len(ev))
    cov = {c: {"coverage": sum(v) / len(v), "questions": len(v)} for c, v in sorted(per.items())}
    every = [x for v in per.values() for x in v]
    cov["all"] = {"coverage": sum(every) / len(every) if every else 0.0, "questions": len(every)}
    return cov


def budget_table(qa: list[dict], systems: dict[str, list[tuple[str, set[str]]]],
                 budgets: tuple[int, ...] = BUDGETS) -> list[dict]:
    """Rows {system, budget, units, tokens, coverage per category} for each system cut to each budget."""
    rows = []
    for name, units in systems.items():
        for b in budgets:
            cut = cut_to_budget(units, b)
            cited = set().union(*(c for _, c in cut)) if cut else set()
            rows.append({"system": name, "budget": b, "units": len(cut), "tokens": sum(tokens(t) for t, _ in cut),
                         "coverage": evidence_coverage(qa, cited)})
    return rows


# --- running --------------------------------------------------------------------------------------


def _dream(catalog, store_id: str, curator: str, model: str | None) -> tuple:
    """Run the dream flow (review mode, then approve all) and return (dream, promoted memories, changes,
    how many new sessions the dream's cap left for the next one)."""
    from dreaming.cli.cmd_dream import run_dream_flow
    from dreaming.dreams import DreamService, Selection
    from dreaming.promotion import promote
    from dreaming.stores import StoreService

    svc = DreamService(catalog)
    d = svc.create(store_id, Selection(all_new=True), curator=curator, model=model,
                   output_behavior="update_existing", require_approval=True)
    left_over = svc.left_over
    d = run_dream_flow(d)
    if d.promotion.state == "awaiting_approval":
        d = promote(catalog, d.id, decided_by="eval:approve-all", reason="dreams eval --real accepts every change")
    stores = StoreService(catalog)
    changes = svc.changes(d.id) if d.candidate_version else []
    if d.promotion.state == "promoted":
        mems = stores.read_version(d.promotion.target_store_id or d.store_id, d.promotion.promoted_version)
    elif d.candidate_version:
        mems = stores.read_version(d.store_id, d.candidate_version)
    else:
        mems = []
    return d, mems, changes, left_over


def run_locomo(path: Path, *, curator: str = "rules", model: str | None = None, limit: int | None = None,
               work: Path, progress: Callable[[str], None] | None = None) -> dict:
    from dreaming.catalog import Catalog
    from dreaming.ingest import ingest_files
    from dreaming.stores import StoreService

    files = locomo_files(path)[: limit or None]
    if not files:
        raise BadInput("no LoCoMo conversation files", file=str(path))
    convs = []
    with use_lake(work / "lake", max_sessions_per_dream=1000) as settings:
        catalog = Catalog(settings)
        for f in files:
            conv_id = f.stem
            if progress:
                progress(f"LoCoMo conversation {conv_id} …")
            try:
                conv = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise BadInput(f"not a LoCoMo conversation: {e}", file=str(f)) from None
            tenant = f"locomo-{conv_id}"
            jsonl = write_locomo_jsonl(conv, conv_id, work / "sources" / tenant)
            ingest_files(jsonl, catalog, fmt="anthropic", tenant=tenant, agent="conversation")
            store = StoreService(catalog).create(f"locomo-{conv_id}", scope=tenant)
            t0 = time.perf_counter()
            d, mems, _changes, _ = _dream(catalog, store["id"], curator, model)
            qa = conv.get("qa") or []
            table = budget_table(qa, {"dream": store_units(mems), "observations": observation_units(conv),
                                      "summaries": summary_units(conv)})
            convs.append({"conversation": conv_id, "sessions": len(d.session_ids), "dream_id": d.id,
                          "promotion": d.promotion.state, "memories": len(mems),
                          "store_tokens": sum(tokens(m.content) for m in mems), "questions": len(qa),
                          "dream_s": round(time.perf_counter() - t0, 3), "tokens": d.usage.total, "budgets": table})
    return {"kind": "locomo", "path": str(path), "curator": curator, "conversations": convs,
            "overall": _overall(convs)}


def _overall(convs: list[dict]) -> list[dict]:
    """Question-weighted coverage per (system, budget, category) over all conversations."""
    acc: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0])
    for c in convs:
        for row in c["budgets"]:
            for cat, v in row["coverage"].items():
                a = acc[(row["system"], row["budget"], cat)]
                a[0] += v["coverage"] * v["questions"]
                a[1] += v["questions"]
    rows: dict[tuple, dict] = {}
    for (system, budget, cat), (s, n) in acc.items():
        r = rows.setdefault((system, budget), {"system": system, "budget": budget, "coverage": {}})
        r["coverage"][cat] = {"coverage": s / n if n else 0.0, "questions": n}
    return sorted(rows.values(), key=lambda r: (r["system"], r["budget"]))


def run_transcripts(path: Path, *, curator: str = "rules", model: str | None = None, work: Path,
                    progress: Callable[[str], None] | None = None, labels_file: Path | None = None,
                    dream_size: int | None = None) -> dict:
    """tau-bench / SWE-bench (any format the ingest adapters detect): dream over an empty store, what it
    mined, and its precision against the labels (``labels_file``, default the shipped ``labels.LABELS_FILE``).
    One dream over every session, or with ``dream_size`` the user's path: consecutive dreams of at most that
    many sessions (oldest first), each promoted before the next; what is scored is the final store."""
    from dreaming.catalog import Catalog
    from dreaming.evaluation import labels as L
    from dreaming.ingest import ingest_files
    from dreaming.stores import StoreService

    labels_file = Path(labels_file) if labels_file else L.LABELS_FILE
    known = L.read_labels(labels_file)  # a bad labels file fails before the dream, not after
    dataset = L.dataset_name(path)
    if dream_size is not None and dream_size < 1:
        raise BadInput(f"the dream size must be at least 1 session, got {dream_size}", file=str(path))

    with use_lake(work / "lake", max_sessions_per_dream=dream_size or 5000) as settings:
        catalog = Catalog(settings)
        if progress:
            progress(f"ingesting {path} …")
        rep = ingest_files([Path(path)], catalog, fmt="auto", tenant="real", agent=Path(path).stem[:60] or "agent")
        store = StoreService(catalog).create("real", scope="real")
        t0 = time.perf_counter()
        dreams, last_op, mems = [], {}, []
        while True:
            d, mems, changes, left_over = _dream(catalog, store["id"], curator, model)
            dreams.append(d)
            for c in changes:
                if c.op in ("add", "update", "supersede"):
                    last_op[c.memory_id] = c.op
            if not left_over or d.promotion.state != "promoted":
                break
            if progress:
                progress(f"dream {len(dreams)}: {len(d.session_ids)} sessions, {left_over} left …")
        written = [m for m in mems if m.memory_id in last_op]  # the store began empty: every memory was written
        mined = [{"op": last_op[m.memory_id], "kind": m.kind, "path": m.path, "support": m.support,
                  "confidence": round(m.confidence, 3), "taint": m.taint, "content": m.content,
                  "fingerprint": L.memory_fingerprint(m)} for m in written]
        sessions = sum(len(x.session_ids) for x in dreams)
        scored = L.score(written, known, dataset, sessions)
        label_of = {r["fingerprint"]: r["label"] for r in scored["memories"]}
        for r in mined:
            r["label"] = label_of[r["fingerprint"]]
        mined.sort(key=lambda r: (-r["support"], r["kind"], r["path"]))
        scored.pop("memories")  # the same rows as ``mined``, which carries fingerprint and label
        d = dreams[-1]
        counts: dict[str, int] = defaultdict(int)
        for x in dreams:
            for k, v in x.counts.items():
                counts[k] += v
        return {"kind": "transcripts", "path": str(path), "dataset": dataset, "curator": curator, "dream_id": d.id,
                "dream_ids": [x.id for x in dreams], "dream_size": dream_size, "undreamt": left_over,
                "status": d.status, "promotion": d.promotion.state, "sessions": sessions,
                "files": len(rep.files), "dream_s": round(time.perf_counter() - t0, 3),
                "tokens": sum(x.usage.total for x in dreams), "counts": dict(counts),
                "labels": {"file": str(labels_file), **scored}, "mined": mined}


def run_real(path: Path, *, curator: str = "rules", model: str | None = None, limit: int | None = None,
             out_dir: Path | None = None, progress: Callable[[str], None] | None = None,
             labels_file: Path | None = None, unlabelled_out: Path | None = None,
             dream_size: int | None = None) -> dict:
    """``dreams eval --real PATH``: LoCoMo is detected by its shape; anything else goes through ingest
    and is scored against the labels. ``unlabelled_out``: also write the memories still to label
    there (JSONL in the labels format, ``label: null``)."""
    path = Path(path)
    if not path.exists():
        raise BadInput("no such file or folder", file=str(path))
    locomo = is_locomo(path)
    if locomo and dream_size is not None:
        raise BadInput("LoCoMo runs one dream per conversation: --dream-size applies to tau-bench and SWE-bench",
                       file=str(path))
    if locomo and unlabelled_out is not None:
        raise BadInput("LoCoMo is scored by evidence coverage, not labels: --unlabelled-out applies to "
                       "tau-bench and SWE-bench", file=str(path))
    home = get_settings().home
    out = Path(out_dir) if out_dir else home / "evals" / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-real-{path.stem}"
    out.mkdir(parents=True, exist_ok=True)
    if locomo:
        report = run_locomo(path, curator=curator, model=model, limit=limit, work=out, progress=progress)
    else:
        report = run_transcripts(path, curator=curator, model=model, work=out, progress=progress,
                                 labels_file=labels_file, dream_size=dream_size)
        if unlabelled_out is not None:
            from dreaming.evaluation.labels import write_unlabelled

            report["labels"]["unlabelled_out"] = str(unlabelled_out)
            write_unlabelled(report["labels"], unlabelled_out)
    report["dir"] = str(out)
    write_text_atomic(json.dumps(report, indent=2, default=str) + "\n", out / "results.json", home / "_staging")
    return report


def print_real_report(report: dict, console) -> None:
    from rich.table import Table

    if report["kind"] == "locomo":
        cats = sorted({c for r in report["overall"] for c in r["coverage"] if c != "all"}) + ["all"]
        t = Table(title=f"LoCoMo evidence coverage by budget ({len(report['conversations'])} conversations; "
                        "share of each question's evidence dialog ids cited)")
        for h in ("system", "budget", *[f"cat {c}" if c != "all" else "all" for c in cats]):
            t.add_column(h, justify="left" if h == "system" else "right")
        for r in report["overall"]:
            t.add_row(r["system"], str(r["budget"]),
                      *(f"{r['coverage'][c]['coverage']:.3f}" if c in r["coverage"] else "—" for c in cats))
        console.print(t)
        for c in report["conversations"]:
            console.print(f"conversation {c['conversation']}: {c['sessions']} sessions → {c['memories']} memories "
                          f"(~{c['store_tokens']} tokens), promotion {c['promotion']}, {c['dream_s']:.1f} s")
    else:
        n = len(report.get("dream_ids") or [report["dream_id"]])
        which = f"dream {report['dream_id']}" if n == 1 else f"{n} dreams of at most {report['dream_size']} sessions"
        console.print(f"{which} over {report['sessions']} sessions: {report['status']}, "
                      f"promotion {report['promotion']}, {report['dream_s']:.1f} s, changes {report['counts']}")
        if report.get("undreamt"):
            console.print(f"[yellow]{report['undreamt']} sessions not dreamt: the last dream was not promoted "
                          f"({report['promotion']})[/]")
        t = Table(title=f"mined from {report['path']}")
        for h in ("support", "kind", "op", "label", "path", "content"):
            t.add_column(h, overflow="fold")
        for r in report["mined"]:
            t.add_row(str(r["support"]), r["kind"], r["op"], r.get("label") or "—", r["path"], r["content"][:160])
        console.print(t)
        print_label_summary(report["labels"], console)
    console.print(f"results: {report['dir']}/results.json")


def print_label_summary(lab: dict, console) -> None:
    """The labelled-set lines of a transcripts report: precision, counts, and what is left to label."""
    from rich.table import Table

    c = lab["counts"]
    prec = "—" if lab["precision"] is None else f"{lab['precision']:.3f}"
    rate = "—" if lab["per_100_sessions"] is None else f"{lab['per_100_sessions']:.1f}"
    console.print(f"{lab['dataset']}: {lab['written']} memories written, precision {prec} (useful / written), "
                  f"{rate} per 100 sessions · " + " · ".join(f"{k} {c[k]}" for k in c), highlight=False)
    if lab["to_label"]:
        t = Table(title=f"to label ({len(lab['to_label'])}; not counted as useful): add them to {lab['file']}")
        for h in ("fingerprint", "path", "content"):
            t.add_column(h, overflow="fold")
        for r in lab["to_label"]:
            t.add_row(r["fingerprint"], r["path"], r["content"][:160])
        console.print(t)
    if lab.get("unlabelled_out"):
        console.print(f"unlabelled memories written to {lab['unlabelled_out']} (fill in label and why, then append "
                      "them to the labels file)")
