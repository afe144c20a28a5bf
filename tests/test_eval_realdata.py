"""`dreams eval --real` on ../shared/research-data (skipped when absent): LoCoMo adapter and budgets."""

from __future__ import annotations

import json

import pytest

from dreaming.errors import BadInput
from dreaming.evaluation import labels as L
from dreaming.evaluation import realdata as R
from dreaming.models import Memory


def _conv(research_data, n: str = "26") -> tuple:
    f = research_data / "locomo10" / "conversations" / f"{n}.json"
    return f, json.loads(f.read_text(encoding="utf-8"))


def test_locomo_is_detected(research_data):
    assert R.is_locomo(research_data / "locomo10")
    assert not R.is_locomo(research_data / "tau-bench-historical" / "gpt-4o-airline.json")
    assert len(R.locomo_files(research_data / "locomo10")) == 10


def test_locomo_adapter_ingests_with_dialog_ids_as_event_ids(research_data, catalog, tmp_path):
    from dreaming.ingest import ingest_files
    from dreaming.lake import Lake

    f, conv = _conv(research_data)
    paths = R.write_locomo_jsonl(conv, "26", tmp_path / "src")
    n_sessions = sum(1 for k in conv if k.startswith("session_") and k[8:].isdigit() and conv[k])
    n_turns = sum(len(conv[k]) for k in conv if k.startswith("session_") and k[8:].isdigit())
    assert len(paths) == n_sessions
    ingest_files(paths, catalog, fmt="anthropic", tenant="locomo-26", agent="conversation")
    with Lake(catalog.settings) as lk:
        rows = lk.con.execute("SELECT event_id, role, text, ts FROM events WHERE tenant = 'locomo-26' "
                              "ORDER BY ts, seq").fetchall()
    assert len(rows) == n_turns
    dia = {t["dia_id"]: t for k in conv if k.startswith("session_") and k[8:].isdigit() for t in conv[k]}
    assert {r[0] for r in rows} == set(dia)
    first = conv["session_1"][0]
    row = next(r for r in rows if r[0] == first["dia_id"])
    assert row[1] == "user" and row[2].startswith(f"{first['speaker']}: ")
    assert rows[0][3].year == 2023


def test_baselines_cover_more_evidence_with_more_budget(research_data):
    _, conv = _conv(research_data)
    qa = conv["qa"]
    table = R.budget_table(qa, {"observations": R.observation_units(conv), "summaries": R.summary_units(conv)},
                           budgets=(500, 4000, 10 ** 7))
    by = {(r["system"], r["budget"]): r for r in table}
    for system in ("observations", "summaries"):
        covs = [by[(system, b)]["coverage"]["all"]["coverage"] for b in (500, 4000, 10 ** 7)]
        assert covs[0] <= covs[1] <= covs[2] and covs[0] < covs[2]
        assert by[(system, 500)]["tokens"] <= 500
    # unlimited summaries cite every dialog turn, so every evidence id that exists is covered
    assert by[("summaries", 10 ** 7)]["coverage"]["all"]["coverage"] > 0.95
    assert set(by[("observations", 500)]["coverage"]) >= {"1", "2", "3", "4", "all"}


@pytest.mark.flow
def test_eval_real_locomo_one_conversation(research_data, lake, prefect_harness, tmp_path):
    f, conv = _conv(research_data)
    rep = R.run_real(f, out_dir=tmp_path / "out")
    assert rep["kind"] == "locomo" and len(rep["conversations"]) == 1
    c = rep["conversations"][0]
    assert c["sessions"] == sum(1 for k in conv if k.startswith("session_") and k[8:].isdigit() and conv[k])
    systems = {r["system"] for r in c["budgets"]}
    assert systems == {"dream", "observations", "summaries"}
    for r in c["budgets"]:
        assert r["tokens"] <= r["budget"]
        assert 0.0 <= r["coverage"]["all"]["coverage"] <= 1.0
    assert (tmp_path / "out" / "results.json").is_file()


# --- the labelled real-data set (dreaming/evaluation/labels.py) ---------------------------------


RULE = ("When `python reproduce.py` fails with 'ImproperlyConfigured: Requested setting INSTALLED_APPS', call "
        "`settings.configure()` and `django.setup()` before importing models (seen in 12 sessions; that "
        "workaround followed and succeeded in 9).")


def _mem(content: str, kind: str = "mistake", path: str = "/mistakes/x.md", **kw) -> Memory:
    return Memory(path=path, content=content, kind=kind, **kw)


def test_fingerprint_survives_statistics_and_reruns():
    a = _mem(RULE, key="mistake:aaaa", support=12, confidence=0.9)
    b = _mem(RULE.replace("12 sessions", "1 session").replace("in 9)", "in 1)"), path="/mistakes/y.md",
             key="mistake:bbbb", support=1, confidence=0.5)
    c = _mem("  " + RULE.replace("'", "\u2019").replace(" call", "\n call").upper() + " ")
    assert L.memory_fingerprint(a) == L.memory_fingerprint(b) == L.memory_fingerprint(c)
    assert len(L.memory_fingerprint(a)) == 16 and int(L.memory_fingerprint(a), 16) >= 0
    assert L.memory_fingerprint({"kind": "mistake", "content": RULE}) == L.memory_fingerprint(a)  # a dict too


def test_fingerprint_changes_with_the_advice():
    base = L.memory_fingerprint(_mem(RULE))
    different = [
        _mem(RULE.replace("call `settings.configure()` and `django.setup()`", "use `think`")),  # another fix
        _mem(RULE.replace("reproduce.py", "manage.py")),  # another command
        _mem(RULE.replace("INSTALLED_APPS", "DATABASES")),  # another error
        _mem(RULE, kind="preference"),
    ]
    assert len({base, *(L.memory_fingerprint(m) for m in different)}) == 5


def test_dataset_names():
    assert L.dataset_name("../shared/research-data/tau-bench-historical/gpt-4o-airline.json") == "tau-bench-airline"
    assert L.dataset_name("/x/tau-bench-historical") == "tau-bench-airline"
    assert L.dataset_name("/x/tau_bench/retail.json") == "tau-bench-retail"
    assert L.dataset_name("/x/swebench-verified-mini-swe-agent-gemini3pro/trajs_django") == "swebench-django"
    assert L.dataset_name("/x/swebench-verified-mini-swe-agent-gemini3pro") == "swebench"
    assert L.dataset_name("/x/SWE-bench/trajs_sympy") == "swebench-sympy"
    assert L.dataset_name("/x/my-sessions.jsonl") == "my-sessions"


def _labels_file(tmp_path, *rows, header: bool = True):
    f = tmp_path / "labels.jsonl"
    lines = ["# a comment", ""] if header else []
    f.write_text("\n".join([*lines, *(json.dumps(r) for r in rows)]) + "\n")
    return f


def _row(m, label, dataset="swebench-django", **kw):
    return {"dataset": dataset, "fingerprint": L.memory_fingerprint(m), "label": label, "path": m.path,
            "content": m.content, "why": "test", **kw}


def test_precision_counts_unlabelled_as_written_never_useful(tmp_path):
    useful, trivial, wrong = _mem(RULE), _mem("Run the tests.", path="/t.md"), _mem("Use `think` instead.", path="/w.md")
    noise = _mem("`bash` fails with '<n>'", path="/n.md")
    new1, new2 = _mem("A rule nobody labelled.", path="/a.md"), _mem("Another one.", path="/b.md")
    pending = _mem("Listed but not judged.", path="/p.md")
    f = _labels_file(tmp_path, _row(useful, "useful"), _row(trivial, "trivial"), _row(wrong, "wrong"),
                     _row(noise, "noise"), _row(pending, None),
                     _row(new1, "useful", dataset="tau-bench-airline"))  # another data set's label does not count
    known = L.read_labels(f)
    # the same memory in a later run, its statistics changed: still labelled
    rerun = _mem(RULE.replace("12 sessions", "14 sessions"))
    res = L.score([rerun, trivial, wrong, noise, new1, new2, pending], known, "swebench-django", sessions=231)
    assert res["written"] == 7 and res["sessions"] == 231
    assert res["counts"] == {"useful": 1, "trivial": 1, "wrong": 1, "noise": 1, "unlabelled": 3}
    assert res["precision"] == round(1 / 7, 4)
    assert res["per_100_sessions"] == round(700 / 231, 2)
    assert [r["path"] for r in res["to_label"]] == ["/a.md", "/b.md", "/p.md"]
    assert set(res["to_label"][0]) == {"fingerprint", "path", "content"}
    assert [r["label"] for r in res["memories"]] == ["useful", "trivial", "wrong", "noise", None, None, None]
    empty = L.score([], known, "swebench-django", sessions=0)
    assert (empty["written"], empty["precision"], empty["per_100_sessions"]) == (0, None, None)


def test_unlabelled_out_round_trips_into_the_labels_file(tmp_path):
    mems = [_mem("A rule nobody labelled."), _mem("Another one.", path="/b.md")]
    res = L.score(mems, {}, "tau-bench-airline", sessions=200)
    out = tmp_path / "new.jsonl"
    assert L.write_unlabelled(res, out) == 2
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows[0] == {"dataset": "tau-bench-airline", "fingerprint": L.memory_fingerprint(mems[0]), "label": None,
                       "path": "/mistakes/x.md", "content": "A rule nobody labelled.", "why": ""}
    assert L.score(mems, L.read_labels(out), "tau-bench-airline", 200)["counts"]["unlabelled"] == 2  # null: unjudged
    rows[0]["label"], rows[1]["label"] = "useful", "noise"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = L.score(mems, L.read_labels(out), "tau-bench-airline", 200)
    assert res["counts"]["useful"] == 1 and res["counts"]["noise"] == 1 and res["to_label"] == []


@pytest.mark.parametrize("line, where", [
    ("{not json", ":3: malformed JSON"),
    ('["a"]', ":3: expected one JSON object per line"),
    ('{"dataset": "d", "label": "useful"}', "(field 'fingerprint')"),
    ('{"dataset": "d", "fingerprint": "XYZ", "label": "useful"}', "16 lower-case hex digits, not 'XYZ' (field 'fingerprint')"),
    ('{"dataset": "d", "fingerprint": "0123456789abcdef"}', "no label"),
    ('{"dataset": "d", "fingerprint": "0123456789abcdef", "label": "good"}', "label must be one of"),
    ('{"dataset": "d", "fingerprint": "0123456789abcdef", "label": "noise", "why": 3}', "(field 'why')"),
])
def test_malformed_labels_name_file_line_and_field(tmp_path, line, where):
    f = tmp_path / "labels.jsonl"
    f.write_text("# header\n\n" + line + "\n")
    with pytest.raises(BadInput) as e:
        L.read_labels(f)
    assert str(e.value).startswith(f"{f}:3: ") and where in str(e.value), str(e.value)


def test_conflicting_labels_are_refused(tmp_path):
    m = _mem(RULE)
    f = _labels_file(tmp_path, _row(m, "useful"), _row(m, None), _row(m, "wrong"))
    with pytest.raises(BadInput, match=r"labels\.jsonl:5: .*labelled 'useful' on line 3 and 'wrong' here"):
        L.read_labels(f)


def test_the_shipped_labels_file_reads():
    assert L.LABELS_FILE.is_file() and L.LABELS_FILE.name == "real_labels.jsonl"
    for (dataset, _fp), item in L.read_labels().items():
        assert dataset in ("tau-bench-airline", "swebench-django") and item.label in (*L.LABELS, None)


def test_report_prints_labels_and_to_label():
    from rich.console import Console

    res = L.score([_mem(RULE), _mem("Another one.", path="/b.md")],
                  L.read_labels(L.LABELS_FILE) | {("swebench-django", L.memory_fingerprint(_mem(RULE))):
                                                   L.Label("swebench-django", L.memory_fingerprint(_mem(RULE)), "useful")},
                  "swebench-django", sessions=4)
    con = Console(record=True, width=200)
    R.print_label_summary({"file": "labels.jsonl", **res}, con)
    text = con.export_text()
    assert "swebench-django: 2 memories written, precision 0.500 (useful / written), 50.0 per 100 sessions" in text
    assert "useful 1 · trivial 0 · wrong 0 · noise 0 · unlabelled 1" in text
    assert "to label (1; not counted as useful)" in text and "/b.md" in text


def _swe_folder(root):
    """Three made-up Django runs hitting one setup error, fixed the same way; labels beside them."""
    from tests.test_ingest_mini_swe_agent import assistant, observe

    root.mkdir(parents=True)
    for i in range(3):
        iid = f"django__django-1000{i}"
        doc = {"instance_id": iid, "trajectory_format": "mini-swe-agent-1", "info": {"exit_status": "Submitted"},
               "messages": [
                   {"role": "system", "content": "You are a helpful assistant that can interact with a shell."},
                   {"role": "user", "content": f"<pr_description>Fix bug {i}</pr_description>"},
                   assistant("reproduce", "python reproduce.py", created=1763511546 + 1000 * i),
                   observe(1, "Traceback (most recent call last):\ndjango.core.exceptions.ImproperlyConfigured: "
                              "Requested setting INSTALLED_APPS, but settings are not configured."),
                   assistant("configure", "DJANGO_SETTINGS_MODULE=tests.settings python reproduce.py",
                             created=1763511556 + 1000 * i),
                   observe(0, "ok"),
                   assistant("submit", "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && git diff",
                             created=1763511566 + 1000 * i),
                   {"role": "user", "content": "diff --git a/x b/x"},
               ]}
        (root / f"{iid}.traj.json").write_text(json.dumps(doc))
    (root / "results_summary.csv").write_text(
        "instance_id,resolved,patch_applied\n" + "".join(f"django__django-1000{i},True,True\n" for i in range(3)))


@pytest.mark.flow
def test_eval_real_transcripts_reports_labels(lake, prefect_harness, tmp_path):
    src = tmp_path / "swebench-test" / "trajs_django"
    _swe_folder(src)
    labels = tmp_path / "labels.jsonl"
    labels.write_text("# none yet\n")
    out = tmp_path / "to-label.jsonl"
    rep = R.run_real(src, out_dir=tmp_path / "out", labels_file=labels, unlabelled_out=out)
    assert rep["kind"] == "transcripts" and rep["dataset"] == "swebench-django" and rep["sessions"] == 3
    assert rep["status"] == "completed", rep
    lab = rep["labels"]
    assert set(lab) == {"file", "dataset", "written", "sessions", "counts", "precision", "per_100_sessions",
                        "to_label", "unlabelled_out"}
    assert lab["written"] == len(rep["mined"]) and lab["counts"]["unlabelled"] == lab["written"]
    assert lab["counts"]["useful"] == 0 and lab["precision"] in (None, 0.0)
    assert all(r["label"] is None and len(r["fingerprint"]) == 16 for r in rep["mined"])
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["fingerprint"] for x in lines] == [r["fingerprint"] for r in lab["to_label"]]
    assert json.loads((tmp_path / "out" / "results.json").read_text())["labels"]["written"] == lab["written"]
    # fill the labels in: the same memories now score
    for x in lines:
        x["label"] = "useful"
    labels.write_text("".join(json.dumps(x) + "\n" for x in lines))
    again = L.score(rep["mined"], L.read_labels(labels), "swebench-django", rep["sessions"])
    assert again["counts"]["unlabelled"] == 0 and again["precision"] == (1.0 if lab["written"] else None)


def test_unlabelled_out_is_refused_for_locomo(tmp_path):
    f = tmp_path / "conv.json"
    f.write_text(json.dumps({"speaker_a": "A", "speaker_b": "B", "session_1": []}))
    with pytest.raises(BadInput, match="--unlabelled-out applies to tau-bench and SWE-bench"):
        R.run_real(f, out_dir=tmp_path / "out", unlabelled_out=tmp_path / "x.jsonl")


def test_run_transcripts_scores_what_the_dream_wrote(tmp_path, lake, monkeypatch):
    """The report of a transcripts run, with the dream replaced by a made-up store: written, counts,
    precision, per 100 sessions, labels on the mined rows, the list to label and --unlabelled-out."""
    from types import SimpleNamespace

    from dreaming.models import Change

    src = tmp_path / "swebench-test" / "trajs_django"
    _swe_folder(src)
    good, new = _mem(RULE), _mem("Run `git diff` before submitting.", kind="workflow", path="/workflows/d.md")
    stale = _mem("Kept from before.", path="/old.md")
    twice = _mem("Use `think` instead.", path="/w.md")
    mems = [good, new, stale, twice]
    changes = [Change(op="add", memory_id=good.memory_id), Change(op="add", memory_id=new.memory_id),
               Change(op="add", memory_id=twice.memory_id), Change(op="update", memory_id=twice.memory_id),
               Change(op="prune", memory_id="mem_gone")]  # stale: not written by this dream
    dream = SimpleNamespace(id="drm_x", status="completed", promotion=SimpleNamespace(state="promoted"),
                            session_ids=["a", "b", "c"], usage=SimpleNamespace(total=0), counts={"add": 3})
    monkeypatch.setattr(R, "_dream", lambda *a, **k: (dream, mems, changes, 0))
    labels = _labels_file(tmp_path, _row(good, "useful"), _row(twice, "wrong"))
    out = tmp_path / "to-label.jsonl"
    rep = R.run_real(src, out_dir=tmp_path / "out", labels_file=labels, unlabelled_out=out)
    lab = rep["labels"]
    assert (rep["dataset"], lab["dataset"], lab["file"]) == ("swebench-django", "swebench-django", str(labels))
    assert lab["written"] == 3 == len(rep["mined"])
    assert lab["counts"] == {"useful": 1, "trivial": 0, "wrong": 1, "noise": 0, "unlabelled": 1}
    assert lab["precision"] == round(1 / 3, 4) and lab["per_100_sessions"] == 100.0
    assert {r["path"]: r["label"] for r in rep["mined"]} == {"/mistakes/x.md": "useful", "/workflows/d.md": None,
                                                             "/w.md": "wrong"}
    assert lab["to_label"] == [{"fingerprint": L.memory_fingerprint(new), "path": "/workflows/d.md",
                                "content": new.content}]
    [line] = [json.loads(x) for x in out.read_text().splitlines()]
    assert line["label"] is None and line["fingerprint"] == L.memory_fingerprint(new)
    assert json.loads((tmp_path / "out" / "results.json").read_text())["labels"]["counts"] == lab["counts"]

    from rich.console import Console

    con = Console(record=True, width=200)
    R.print_real_report(rep, con)
    text = con.export_text()
    assert "precision 0.333" in text and "to label (1" in text and str(out) in text


def test_dream_size_dreams_batch_after_batch_and_scores_the_final_store(tmp_path, lake, monkeypatch):
    """--dream-size: dream after dream (each promoted) while the cap leaves sessions over; the final store is
    scored, with every memory any of the dreams wrote; a dream that is not promoted ends the run."""
    from types import SimpleNamespace

    from dreaming.models import Change

    src = tmp_path / "swebench-test" / "trajs_django"
    _swe_folder(src)
    first, second = _mem(RULE), _mem("Run `git diff` before submitting.", kind="workflow", path="/workflows/d.md")
    calls = []

    def fake_dream(*a, **k):
        n = len(calls)
        calls.append(n)
        d = SimpleNamespace(id=f"drm_{n}", status="completed", promotion=SimpleNamespace(state="promoted"),
                            session_ids=["a", "b"] if n == 0 else ["c"], usage=SimpleNamespace(total=0),
                            counts={"add": 1})
        if n == 0:
            return d, [first], [Change(op="add", memory_id=first.memory_id)], 1
        return d, [first, second], [Change(op="add", memory_id=second.memory_id)], 0

    monkeypatch.setattr(R, "_dream", fake_dream)
    labels = _labels_file(tmp_path, _row(first, "useful"), _row(second, "useful"))
    rep = R.run_real(src, out_dir=tmp_path / "out", labels_file=labels, dream_size=2)
    assert rep["dream_ids"] == ["drm_0", "drm_1"] and rep["sessions"] == 3 and rep["dream_size"] == 2
    assert rep["counts"] == {"add": 2} and rep["labels"]["counts"]["useful"] == 2 == rep["labels"]["written"]
    with pytest.raises(BadInput, match="at least 1 session"):
        R.run_real(src, out_dir=tmp_path / "out2", labels_file=labels, dream_size=0)
