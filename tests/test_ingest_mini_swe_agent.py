"""mini-swe-agent ``.traj.json`` trajectories → the event schema."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from dreaming.errors import BadInput
from dreaming.ingest import ingest_files
from dreaming.lake import Lake


def assistant(thought: str, *commands: str, created: int | None = None) -> dict:
    body = f"THOUGHT: {thought}\n\n" + "\n\n".join(f"```bash\n{c}\n```" for c in commands)
    m = {"role": "assistant", "content": body}
    if created is not None:
        m["extra"] = {"response": {"id": "gen-1", "object": "chat.completion", "created": created}}
    return m


def observe(rc: int, output: str) -> dict:
    return {"role": "user", "content": f"<returncode>{rc}</returncode>\n<output>\n{output}\n</output>"}


def trajectory(with_times: bool = True) -> dict:
    t0 = 1763511546 if with_times else None
    return {
        "instance_id": "django__django-99999",
        "trajectory_format": "mini-swe-agent-1",
        "info": {"exit_status": "Submitted", "submission": "diff --git a/x b/x", "model_stats": {"api_calls": 5}},
        "messages": [
            {"role": "system", "content": "You are a helpful assistant that can interact with a shell."},
            {"role": "user", "content": "<pr_description>Fix the validator</pr_description>"},
            assistant("look around", "ls django/core", created=t0),
            observe(0, "validators.py"),
            assistant("run it", "python -c 'import django; x()'", created=t0 + 10 if t0 else None),
            observe(1, "Traceback (most recent call last):\n  File \"<string>\", line 1\nNameError: x"),
            assistant("two at once", "ls", "pwd", created=t0 + 20 if t0 else None),
            {"role": "user", "content": "Please always provide EXACTLY ONE action in triple backticks, found 2 actions."},
            assistant("grep", "grep -n foo bar.py", created=t0 + 30 if t0 else None),
            observe(2, "grep: bar.py: No such file or directory"),
            assistant("submit", "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && git diff", created=t0 + 40 if t0 else None),
            {"role": "user", "content": "diff --git a/x b/x\n+fixed"},
        ],
    }


def test_trajectory(tmp_path, lake, catalog):
    f = tmp_path / "django__django-99999.traj.json"
    f.write_text(json.dumps(trajectory(), indent=1))
    [res] = ingest_files([f], catalog, tenant="swe").files
    assert res.status == "ingested", res.error
    assert res.format == "mini-swe-agent"
    rows = sorted(pq.read_table(next(lake.transcripts_dir.rglob("*.parquet"))).to_pylist(), key=lambda r: r["seq"])
    assert [r["type"] for r in rows] == [
        "system.message", "user.message",
        "agent.message", "agent.tool_use", "agent.tool_result",
        "agent.message", "agent.tool_use", "agent.tool_result",
        "agent.message", "system.message",  # two bash blocks: the harness rejects it, nothing executed
        "agent.message", "agent.tool_use", "agent.tool_result",
        "agent.message", "agent.tool_use", "agent.tool_result",
        "span.outcome_evaluation_end",
    ]
    results = [r for r in rows if r["type"] == "agent.tool_result"]
    assert [r["is_error"] for r in results] == [False, True, True, False]  # rc 0, traceback, rc 2, diff
    uses = [r for r in rows if r["type"] == "agent.tool_use"]
    assert [r["tool_use_id"] for r in uses] == [r["tool_use_id"] for r in results]
    assert json.loads(uses[0]["tool_input"]) == {"command": "ls django/core"}
    assert all(r["tool_name"] == "bash" for r in uses)
    assert rows[-1]["outcome"] == "Submitted"
    assert str(rows[0]["ts"]) == "2025-11-19 00:19:06+00:00"  # first assistant turn's time
    assert str(rows[7]["ts"]) == "2025-11-19 00:19:16+00:00"  # output takes its command's time
    assert {r["session_id"] for r in rows} == {"django__django-99999"}
    assert (res.tool_calls, res.errors) == (4, 3)  # rc != 0, a traceback, and the harness rejection
    with Lake(lake) as lk:
        [s] = lk.sessions()
    assert (s["tool_calls"], s["errors"], s["outcome"]) == (4, 3, "Submitted")  # the sessions view counts the rejection too


def test_without_timestamps_or_instance_id(tmp_path, lake, catalog):
    doc = trajectory(with_times=False)
    del doc["instance_id"]
    f = tmp_path / "case-1.traj.json"
    f.write_text(json.dumps(doc))
    [res] = ingest_files([f], catalog).files
    assert res.status == "ingested", res.error
    with Lake(lake) as lk:
        [s] = lk.sessions()
    assert s["session_id"] == "case-1"
    assert str(s["started_at"]).startswith("2024-01-01 00:00:00")


def test_bad_message_names_field(tmp_path, lake, catalog):
    doc = trajectory()
    doc["messages"][3] = {"role": "user", "content": None}
    f = tmp_path / "x.traj.json"
    f.write_text(json.dumps(doc))
    [res] = ingest_files([f], catalog).files
    assert res.status == "failed"
    assert "messages[3].content" in res.error and f"{f}:1:" in res.error


# --- outcome labels (SWE-bench's results_summary.csv / sb-cli-report.json) -----------------------


def _outcomes(lake) -> dict[str, tuple]:
    with Lake(lake) as lk:
        rows = lk.con.execute("SELECT session_id, event_id, outcome, text, raw FROM events "
                              "WHERE type = 'span.outcome_evaluation_end'").fetchall()
    return {r[0]: r[1:] for r in rows}


def _two_trajectories(folder) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for iid in ("django__django-99999", "django__django-11111"):
        doc = trajectory()
        doc["instance_id"] = iid
        p = folder / f"{iid}.traj.json"
        p.write_text(json.dumps(doc))
        paths.append(p)
    return paths


SUMMARY = "instance_id,resolved,patch_applied\ndjango__django-99999,True,True\nastropy__astropy-1,False,True\n"


def test_labels_beside_the_trajectories_set_resolved(tmp_path, lake, catalog):
    root = tmp_path / "swe"
    _two_trajectories(root / "trajs")
    (root / "results_summary.csv").write_text(SUMMARY)  # in the parent of the trajectories' folder
    report = ingest_files([root / "trajs"], catalog, tenant="swe")
    assert report.ok, [f.error for f in report.failed]
    got = _outcomes(lake)
    assert got["django__django-99999"][1:3] == ("resolved", "exit_status Submitted; resolved")
    assert json.loads(got["django__django-99999"][3])["exit_status"] == "Submitted"  # raw is still `info`
    assert got["django__django-11111"][1:3] == ("Submitted", "exit_status Submitted")  # not named: unchanged
    with Lake(lake) as lk:
        assert {s["session_id"]: s["outcome"] for s in lk.sessions()}["django__django-99999"] == "resolved"


def test_explicit_labels_json_and_stable_event_ids(tmp_path, monkeypatch):
    from dreaming.catalog import Catalog
    from dreaming.settings import get_settings

    paths = _two_trajectories(tmp_path / "trajs")
    report = tmp_path / "elsewhere" / "report.json"
    report.parent.mkdir()
    report.write_text(json.dumps({"resolved_ids": [], "unresolved_ids": ["django__django-11111"]}, indent=1))
    lakes = {}
    for name, labels in (("plain", None), ("labelled", report)):
        monkeypatch.setenv("DREAMS_HOME", str(tmp_path / name))
        settings = get_settings()
        rep = ingest_files(paths, Catalog(settings), tenant="swe", labels=labels)
        assert rep.ok, [f.error for f in rep.failed]
        lakes[name] = _outcomes(settings), settings
    plain, labelled = lakes["plain"][0], lakes["labelled"][0]
    assert labelled["django__django-11111"][1] == "unresolved" and plain["django__django-11111"][1] == "Submitted"
    assert labelled["django__django-99999"][1] == "Submitted"
    # the outcome event keeps its id with or without labels: a lake holding both counts one outcome
    assert {k: v[0] for k, v in plain.items()} == {k: v[0] for k, v in labelled.items()}
    with Lake(lakes["plain"][1]) as a, Lake(lakes["labelled"][1]) as b:
        q = "SELECT event_id FROM events ORDER BY session_id, seq"
        assert a.con.execute(q).fetchall() == b.con.execute(q).fetchall()


def test_a_folder_never_ingests_the_labels_json(tmp_path, lake, catalog):
    _two_trajectories(tmp_path)
    (tmp_path / "sb-cli-report.json").write_text(json.dumps({"resolved_ids": ["django__django-11111"]}))
    report = ingest_files([tmp_path], catalog, tenant="swe")
    assert report.ok and len(report.files) == 2, [f.path for f in report.files]
    assert _outcomes(lake)["django__django-11111"][1] == "resolved"


@pytest.mark.parametrize("name, text, where", [
    ("results_summary.csv", "instance_id,passed\nx,True\n", ":1: labels CSV has no 'resolved' column"),
    ("results_summary.csv", SUMMARY + "django__django-11111,maybe,True\n", ":4: resolved must be True or False"),
    ("results_summary.csv", SUMMARY + ",True,True\n", ":4: empty instance id (field 'instance_id')"),
    ("results_summary.csv", SUMMARY + "django__django-99999,False,True\n", ":4: instance 'django__django-99999' is labelled both"),
    ("sb-cli-report.json", '{"resolved_ids": [\n"a",\n', ":3: malformed JSON"),
    ("sb-cli-report.json", '{"total": 1,\n "resolved_ids": "a"}', ":2: resolved_ids must be a list"),
    ("sb-cli-report.json", '{"resolved_ids": ["a", 3]}', "(field 'resolved_ids[1]')"),
    ("sb-cli-report.json", '{"resolved_ids": ["a"], "unresolved_ids": ["a"]}', "in both resolved_ids and unresolved_ids"),
    ("sb-cli-report.json", '[1, 2]', "expected an sb-cli report object"),
])
def test_malformed_labels_name_file_line_and_field(tmp_path, lake, catalog, name, text, where):
    [traj, _] = _two_trajectories(tmp_path / "trajs")
    labels = tmp_path / name
    labels.write_text(text)
    with pytest.raises(BadInput) as e:  # named explicitly: refused before anything is ingested
        ingest_files([traj], catalog, labels=labels)
    assert f"{labels}" in str(e.value) and where in str(e.value), str(e.value)
    # found beside the trajectories: those files fail with the same message, nothing is ingested
    report = ingest_files([tmp_path / "trajs"], catalog)
    assert [f.status for f in report.files] == ["failed", "failed"]
    assert where in report.files[0].error and str(labels) in report.files[0].error
    with Lake(lake) as lk:
        assert lk.sessions() == []


def test_labels_option_on_the_cli(tmp_path, lake):
    from typer.testing import CliRunner

    from dreaming.cli import app

    [traj, _] = _two_trajectories(tmp_path / "trajs")
    bad = tmp_path / "labels.csv"
    bad.write_text("instance_id\nx\n")
    r = CliRunner().invoke(app, ["ingest", str(traj), "--labels", str(bad)])
    assert r.exit_code == 2 and "--labels" in r.output and "no 'resolved' column" in r.output, r.output
    good = tmp_path / "labels.csv"
    good.write_text(SUMMARY)
    r = CliRunner().invoke(app, ["ingest", str(traj), "--labels", str(good), "--json"])
    assert r.exit_code == 0, r.output
    assert _outcomes(lake)["django__django-99999"][1] == "resolved"


@pytest.mark.realdata
def test_real_swebench_django_resolved_labels(research_data, lake, catalog):
    root = research_data / "swebench-verified-mini-swe-agent-gemini3pro"
    report = ingest_files([root / "trajs_django"], catalog, tenant="swe")  # results_summary.csv in the parent
    assert report.ok and len(report.ingested) == 231, [f.error for f in report.failed][:3]
    with Lake(lake) as lk:
        outcomes = [s["outcome"] for s in lk.sessions(tenant="swe")]
    assert (outcomes.count("resolved"), outcomes.count("unresolved")) == (179, 52)  # the folder's README: 179/231
