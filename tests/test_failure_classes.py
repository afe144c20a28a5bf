"""The defect classes found on real transcripts (issue 13), each on a small excerpt written to mimic the real
files: what is a tool error and what is a control signal, who failed, what the fix was, what counts as
recurrence. The curator is run without Prefect; the signals come from real DuckDB SQL over a real lake."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from dreaming.curators.base import CurationInput
from dreaming.curators.rules import RulesCurator
from dreaming.lake import Lake
from dreaming.policy import Policy
from dreaming.signals import extract_signals
from dreaming.signals.shell import parse
from tests.factories import T0, write_sessions

NOW = T0 + timedelta(days=3)


def signals(settings, sessions):
    write_sessions(settings, sessions)
    with Lake(settings) as lk:
        return extract_signals(lk.con, [s["session_id"] for s in sessions], Policy())


def curate(sig, sessions):
    inp = CurationInput(dream_id="drm_t", store={"id": "memstore_t"}, base=[], session_ids=sorted(
        s["session_id"] for s in sessions), signals=sig, instructions=None, policy=Policy(), now=NOW)
    return RulesCurator().curate(inp).changes


def classes(sig):
    return {(e["failed_tool"], e["failure_class"]) for e in sig.errors}


def test_shell_parser_reads_chains_heredocs_and_wrappers():
    assert parse('cd "/Users/me/My Project" && npm test -- --watch=false').label == "npm"
    assert parse("DJANGO_SETTINGS_MODULE=x timeout 60 python -m pytest -q tests/ | tail -5").label == "pytest"
    heredoc = parse("cat <<'EOF' > repro.py\nimport django\ndjango.setup()\nEOF")
    assert heredoc.program == "write-file" and heredoc.writes == {"repro.py": "import django\ndjango.setup()\n"}
    assert parse("cd /testbed && ./tests/runtests.py validators").label == "runtests.py"
    assert parse("sudo apt-get install -y libpq-dev; echo done").label == "apt-get"
    assert parse("uv pip install requests").label == "uv"
    assert parse("python -c 'import django; django.setup()'").codes == ("import django; django.setup()",)


def test_control_signals_are_not_tool_errors(lake):
    sessions = [{"session_id": f"c{i}", "start": T0 + timedelta(hours=i), "events": [
        ("user", "Add a test for the login view"),
        ("tool_use", "Bash", {"command": "rm -rf build/"}),
        ("tool_result", "The user doesn't want to proceed with this tool use. The tool use was rejected.", True),
        ("user", "No, don't delete the build folder, run `make clean` instead."),
        ("tool_use", "Bash", {"command": "git push --force"}),
        ("tool_result", "PreToolUse:Bash hook error: blocked by policy: force pushes are not allowed", True),
        ("tool_use", "Bash", {"command": "grep -rn 'def login' src/"}),
        ("tool_result", "Exit code 1", True),
        ("system", "Please always provide EXACTLY ONE action in triple backticks, found 2 actions.", True),
        ("tool_use", "Bash", {"command": "python3 reproduce_issue.py"}),
        ("tool_result", "Traceback (most recent call last):\nAssertionError: expected 1 got 2", True),
        ("tool_use", "Bash", {"command": "python3 check.py"}),
        ("tool_result", "  File \"check.py\", line 3\nSyntaxError: invalid syntax", True),
    ]} for i in range(3)]
    sig = signals(lake, sessions)
    got = classes(sig) | {(None, e["failure_class"]) for e in sig.errors if e["failed_tool"] is None}
    assert ("Bash:rm", "user_rejection") in got
    assert ("Bash:git", "hook_block") in got
    assert ("Bash:grep", "expected_failure") in got
    assert (None, "harness_format") in got
    assert ("Bash:reproduce_issue.py", "expected_failure") in got
    assert ("Bash:check.py", "agent_bug") in got
    assert not any(e["failure_class"] == "tool_error" for e in sig.errors)
    changes = curate(sig, sessions)
    assert not [c for c in changes if c.kind == "mistake"]  # none of them is a tool quirk
    # the rejection and the person's next words are a correction, learned as a rule (repeated in three tasks)
    (rule,) = [c for c in changes if c.kind == "preference"]
    assert rule.after == "No, don't delete the build folder, run `make clean` instead."
    assert rule.support == 3


def test_a_single_correction_is_learned_with_lower_confidence(lake):
    sessions = [{"session_id": "one", "events": [
        ("user", "Write tests for the orders repository"),
        ("tool_use", "Edit", {"file_path": "tests/test_orders.py"}),
        ("tool_result", "The user doesn't want to proceed with this tool use. The tool use was rejected.", True),
        ("user", "No, don't mock the database in these tests; use the test database fixture."),
    ]}]
    (rule,) = [c for c in curate(signals(lake, sessions), sessions) if c.path.startswith("/rules/")]
    assert rule.after.startswith("No, don't mock the database in these tests")
    assert rule.support == 1 and rule.confidence < 0.5


def test_the_workaround_is_the_fix_not_the_next_tool(lake):
    """A no-op (`think`) or another lookup after the error is not a fix; the retry of the same call with a
    changed argument is, and it is written with the argument named."""
    def sess(i):
        return {"session_id": f"t{i}", "start": T0 + timedelta(hours=i), "events": [
            ("outcome", "0.0", {"task_id": i, "info": {"task": {"user_id": f"user_{i}"}}}),
            ("tool_use", "update_reservation_flights", {"reservation_id": "R1", "payment_id": f"certificate_{i}00"}),
            ("tool_result", "Error: certificate cannot be used to update reservation", True),
            ("tool_use", "think", {"thought": "try another payment"}), ("tool_result", ""),
            ("tool_use", "update_reservation_flights", {"reservation_id": "R1", "payment_id": f"credit_card_{i}1"}),
            ("tool_result", '{"reservation_id": "R1"}'),
        ]}
    sessions = [sess(i) for i in range(2)]
    (m,) = [c for c in curate(signals(lake, sessions), sessions) if c.kind == "mistake"]
    assert "`think`" not in m.after and "instead" not in m.after
    assert m.after == ("When `update_reservation_flights` fails with 'Error: certificate cannot be used to update "
                       "reservation', do not pass `certificate_…` as `payment_id` (the call that then succeeded "
                       "passed `credit_card_…`).")


def test_reused_tool_call_ids_pair_each_result_with_its_own_call(lake):
    """tau-bench reuses tool-call ids within a run: the error belongs to the latest call with that id."""
    sessions = [{"session_id": f"r{i}", "start": T0 + timedelta(hours=i), "events": [
        ("tool_use", "think", {"thought": "plan"}, "call_1"), ("tool_result", "", False, "call_1"),
        ("tool_use", "book_reservation", {"amount": 1}, "call_1"),
        ("tool_result", "Error: payment amount does not add up", True, "call_1"),
    ]} for i in range(2)]
    sig = signals(lake, sessions)
    assert {e["failed_tool"] for e in sig.errors} == {"book_reservation"}
    seq = {t["session_id"]: [(x["tool_name"], x["failed"]) for x in t["tool_events"]] for t in sig.tool_sequences}
    assert seq["r0"] == [("think", False), ("book_reservation", True)]


def test_a_heredoc_fix_is_the_lines_the_script_gained(lake):
    script_v1 = "from django.conf import settings\nsettings.configure(INSTALLED_APPS=[])\nfrom app.models import A\n"
    script_v2 = ("import django\nfrom django.conf import settings\nsettings.configure(INSTALLED_APPS=[])\n"
                 "django.setup()\nfrom app.models import A\n")
    def sess(i):
        return {"session_id": f"h{i}", "start": T0 + timedelta(hours=i), "events": [
            ("user", f"Fix issue {i}: the admin crashes on a model with a very long verbose name field"),
            ("tool_use", "bash", {"command": f"cd /repo{i} && cat <<'EOF' > repro_{i}.py\n{script_v1}EOF"}),
            ("tool_result", "<returncode>0</returncode>"),
            ("tool_use", "bash", {"command": f"cd /repo{i} && python3 repro_{i}.py"}),
            ("tool_result", "<returncode>1</returncode><output>Traceback (most recent call last):\n"
                            "django.core.exceptions.AppRegistryNotReady: Apps aren't loaded yet.</output>", True),
            ("tool_use", "bash", {"command": f"cat <<'EOF' > repro_{i}.py\n{script_v2}EOF"}),
            ("tool_result", "<returncode>0</returncode>"),
            ("tool_use", "bash", {"command": f"cd /repo{i} && python3 repro_{i}.py"}),
            ("tool_result", "<returncode>0</returncode><output>ok</output>"),
        ]}
    sessions = [sess(i) for i in range(2)]
    (m,) = [c for c in curate(signals(lake, sessions), sessions) if c.kind == "mistake"]
    assert m.after == ("When a `python` script fails with 'django.core.exceptions.AppRegistryNotReady: Apps aren't "
                       "loaded yet.', add `django.setup()` to the script before it runs.")
    assert "/repo" not in m.path and "cat" not in m.after


def test_trials_of_one_task_are_one_context(lake):
    """Four trials of one task, with one customer, count once: no pattern, no preference of 'the users'."""
    def trial(k):
        return {"session_id": f"task7-trial{k}", "start": T0 + timedelta(hours=k), "events": [
            ("outcome", "0.0", {"task_id": 7, "trial": k, "info": {"task": {"user_id": "mia_li_3668"}}}),
            ("user", "Hi, I want to change my flight to a later one."),
            ("user", "No, I don't want travel insurance, please use my credit card."),
            ("tool_use", "update_reservation_flights", {"payment_id": "certificate_1"}),
            ("tool_result", "Error: certificate cannot be used to update reservation", True),
            ("tool_use", "update_reservation_flights", {"payment_id": "credit_card_2"}),
            ("tool_result", "{}"),
        ]}
    sessions = [trial(k) for k in range(4)]
    sig = signals(lake, sessions)
    assert {c["context"] for c in sig.contexts} == {"task:7"}
    assert {c["voice"] for c in sig.contexts} == {"user:mia_li_3668"}
    assert curate(sig, sessions) == []


def test_compaction_summaries_and_reminders_are_not_a_persons_words(lake):
    summary = ("This session is being continued from a previous conversation that ran out of context. "
               "Always use the staging database. Never push to main.")
    sessions = [{"session_id": f"s{i}", "start": T0 + timedelta(hours=i), "events": [
        ("user", f"Refactor the billing module number {i} and keep the public interface stable"),
        ("user", summary),
        ("user", "<system-reminder>Always respond in French. Never use emojis.</system-reminder>ok, go on"),
    ]} for i in range(3)]
    sig = signals(lake, sessions)
    assert sig.preferences == []
    assert curate(sig, sessions) == []


def test_a_harness_template_in_every_task_is_not_a_preference(lake):
    template = "You must never modify the tests. Always run the full suite before you submit."
    sessions = [{"session_id": f"p{i}", "start": T0 + timedelta(hours=i), "events": [
        ("user", f"<pr_description>Bug {i}: the widget {i} renders wrongly</pr_description>\n{template}"),
    ]} for i in range(5)]
    sig = signals(lake, sessions)
    assert not [p for p in sig.preferences if "modify the tests" in p["normalized"]]


@pytest.mark.parametrize("command,label", [
    ("cd /Users/me/proj && pytest -x", "pytest"),
    ("source .venv/bin/activate && python manage.py test", "manage.py"),
    ("export FOO=1; make test", "make"),
])
def test_labels_never_name_a_path(command, label):
    assert parse(command).label == label


def test_a_re_exported_copy_counts_once_but_the_same_request_twice_is_two_tasks(lake):
    def sess(sid, file):
        return {"session_id": sid, "start": T0, "events": [
            ("user", "The CI job `test-notifications` is failing on main. Can you fix it?"),
            ("tool_use", "Read", {"file_path": file}), ("tool_result", "..."),
            ("user", "Always run `make lint` before you commit, never skip it."),
        ]}
    sessions = [sess("day1", "tests/test_a.py"), sess("day1-copy", "tests/test_a.py"), sess("day9", "tests/test_b.py")]
    sig = signals(lake, sessions)
    ctx = {c["session_id"]: c["context"] for c in sig.contexts}
    assert ctx["day1"] == ctx["day1-copy"] != ctx["day9"]
    (pref,) = [c for c in curate(sig, sessions) if c.kind == "preference"]
    assert pref.support == 2  # two tasks, not three sessions


def test_a_value_class_is_the_fix_only_when_the_error_is_about_that_kind_of_value(lake):
    """'certificate cannot be used' is about certificates; 'gift card balance is not enough' is about one
    card's balance: "do not pay with a gift card" would be wrong."""
    def sess(i):
        return {"session_id": f"g{i}", "start": T0 + timedelta(hours=i), "events": [
            ("outcome", "1.0", {"task_id": i, "info": {"task": {"user_id": f"user_{i}"}}}),
            ("tool_use", "update_reservation_flights", {"reservation_id": "R1", "payment_id": f"gift_card_{i}00"}),
            ("tool_result", "Error: gift card balance is not enough", True),
            ("tool_use", "update_reservation_flights", {"reservation_id": "R1", "payment_id": f"credit_card_{i}1"}),
            ("tool_result", '{"reservation_id": "R1"}'),
        ]}
    sessions = [sess(i) for i in range(3)]
    sig = signals(lake, sessions)
    assert all(e["fix_candidates"] == [] for e in sig.errors)
    assert not [c for c in curate(sig, sessions) if c.kind == "mistake"]


def test_an_unchanged_retry_after_another_call_is_not_a_transient_error(lake):
    """Claude Code's Edit before Read: the same Edit works after a Read. "Wait and retry" would be wrong; the
    error already says "Read it first", so no memory is needed."""
    def sess(i):
        return {"session_id": f"e{i}", "start": T0 + timedelta(hours=i), "events": [
            ("user", f"Rename the helper number {i} in the settings module and update its callers"),
            ("tool_use", "Edit", {"file_path": f"src/m{i}.py", "old_string": "a", "new_string": "b"}),
            ("tool_result", "File has not been read yet. Read it first before writing to it.", True),
            ("tool_use", "Read", {"file_path": f"src/m{i}.py"}), ("tool_result", "a = 1"),
            ("tool_use", "Edit", {"file_path": f"src/m{i}.py", "old_string": "a", "new_string": "b"}),
            ("tool_result", "ok"),
        ]}
    sessions = [sess(i) for i in range(3)]
    sig = signals(lake, sessions)
    assert all(c["kind"] != "retry" for e in sig.errors for c in e["fix_candidates"])
    assert not [c for c in curate(sig, sessions) if c.kind == "mistake"]


def test_a_test_run_that_reports_its_results_ran_so_the_error_before_it_is_fixed(lake):
    """Django's runner: `runtests.py forms` cannot import a module named `forms`; `runtests.py forms_tests` runs
    the tests and one of them errors. That run is the code's answer (expected), not a new tool error, and it
    shows the label fix — learned once it recurs in two tasks."""
    missing = ("<returncode>1</returncode><output>Testing against Django installed in '/testbed/django'\n"
               "E\n======================================================================\n"
               "ERROR: forms (unittest.loader._FailedTest)\nImportError: Failed to import test module: forms\n"
               "Traceback (most recent call last):\nModuleNotFoundError: No module named 'forms'\n\n"
               "Ran 1 test in 0.000s\n\nFAILED (errors=1)\n</output>")
    ran = ("<returncode>1</returncode><output>Creating test database for alias 'default'...\n....E....\n"
           "======================================================================\n"
           "ERROR: test_unicode_filename (forms_tests.tests.tests.FormsModelTestCase)\n"
           "----------------------------------------------------------------------\nTraceback (most recent "
           "call last):\nUnicodeEncodeError: 'ascii' codec can't encode characters in position 39-47\n\n"
           "Ran 912 tests in 4.021s\n\nFAILED (errors=1, skipped=1)\n</output>")

    def sess(i):
        return {"session_id": f"dj{i}", "start": T0 + timedelta(hours=i), "events": [
            ("user", f"<pr_description>Issue {i}: a form field {i} loses its initial value</pr_description>"),
            ("tool_use", "bash", {"command": "./tests/runtests.py forms"}), ("tool_result", missing, True),
            ("tool_use", "bash", {"command": "ls tests"}), ("tool_result", "<returncode>0</returncode>"),
            ("tool_use", "bash", {"command": "./tests/runtests.py forms_tests"}), ("tool_result", ran, True),
        ]}
    sessions = [sess(i) for i in range(2)]
    sig = signals(lake, sessions)
    by_cmd = {e["failed_command"]: e["failure_class"] for e in sig.errors}
    assert by_cmd == {"./tests/runtests.py forms": "tool_error", "./tests/runtests.py forms_tests": "expected_failure"}
    (m,) = [c for c in curate(sig, sessions) if c.kind == "mistake"]
    assert m.support == 2 and m.after == ("When `runtests.py forms` fails with 'ModuleNotFoundError: No module "
                                          "named 'forms'', use `forms_tests` instead of `forms`.")


@pytest.mark.parametrize("command,output", [
    ("python -m pytest -q tests/test_api.py", "F..\n=========== 1 failed, 2 passed in 0.31s ===========\n"),
    ("npx jest src/", "FAIL src/sum.test.js\nTests:       1 failed, 4 passed, 5 total\n"),
    ("go test ./...", "--- FAIL: TestSum (0.00s)\n    sum_test.go:9: got 3\nFAIL\n"),
    ("cargo test", "test tests::it_adds ... FAILED\n\ntest result: FAILED. 3 passed; 1 failed\n"),
    ("bundle exec rspec", "Failures:\n  1) Cart totals\n\n3 examples, 1 failure\n"),
])
def test_a_test_run_that_reports_failing_tests_is_expected_in_every_runner(lake, command, output):
    sessions = [{"session_id": "tr", "start": T0, "events": [
        ("user", "Make the cart total include tax and keep the tests green"),
        ("tool_use", "Bash", {"command": command}), ("tool_result", output, True),
    ]}]
    (e,) = signals(lake, sessions).errors
    assert e["failure_class"] == "expected_failure", (command, e["line"])


def test_a_multi_line_fix_keeps_each_block_with_its_lines(lake):
    """Two scripts add the same two blocks in different orders: the memory lists the lines as one script
    wrote them (`class Meta:` next to its `app_label`), never interleaved by their earliest position."""
    meta = "    class Meta:\n        app_label = '__main__'\n"
    schema = "with connection.schema_editor() as schema_editor:\n    schema_editor.create_model(Book)\n"
    head = "from django.db import connection, models\nclass Book(models.Model):\n    title = models.CharField()\n"
    run = "print(Book.objects.count())\n"

    def sess(i, fixed):
        return {"session_id": f"m{i}", "start": T0 + timedelta(hours=i), "events": [
            ("user", f"Fix issue {i}: ordering by a related title crashes the admin changelist page"),
            ("tool_use", "bash", {"command": f"cat <<'EOF' > repro_{i}.py\n{head}{run}EOF"}),
            ("tool_result", "<returncode>0</returncode>"),
            ("tool_use", "bash", {"command": f"python3 repro_{i}.py"}),
            ("tool_result", "<returncode>1</returncode><output>Traceback (most recent call last):\n"
                            "django.db.utils.OperationalError: no such table: __main___book</output>", True),
            ("tool_use", "bash", {"command": f"cat <<'EOF' > repro_{i}.py\n{fixed}EOF"}),
            ("tool_result", "<returncode>0</returncode>"),
            ("tool_use", "bash", {"command": f"python3 repro_{i}.py"}),
            ("tool_result", "<returncode>0</returncode><output>0</output>"),
        ]}
    sessions = [sess(0, head + meta + schema + run), sess(1, schema + head + meta + run)]
    (m,) = [c for c in curate(signals(lake, sessions), sessions) if c.kind == "mistake"]
    lines = re.findall(r"`([^`]+)`", m.after.split(", add ", 1)[1])
    assert set(lines) == {"class Meta:", "app_label = '__main__'",
                          "with connection.schema_editor() as schema_editor:", "schema_editor.create_model(Book)"}
    assert lines.index("app_label = '__main__'") == lines.index("class Meta:") + 1, m.after
    assert lines.index("schema_editor.create_model(Book)") == lines.index(
        "with connection.schema_editor() as schema_editor:") + 1, m.after
