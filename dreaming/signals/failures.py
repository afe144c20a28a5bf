"""What kind of failure an error event is: the one vocabulary of failure classes, and the SQL that assigns it.

Only a ``tool_error`` — the tool or the environment refused a call the agent made, and a later step can
fix it — may become a mistake memory. The other classes are control signals or the agent's own work:

=================  ==================================================================================
class              what it is (and what the dream does with it)
=================  ==================================================================================
tool_error         a tool or the environment rejected a call (missing module, misconfigured settings,
                   an API error): mined as a mistake when a later call fixed it
user_rejection     a person rejected a tool call or interrupted the agent ("The user doesn't want to
                   proceed with this tool use", "[Request interrupted by user]"): the person's next
                   message is a **correction** (``Signals.corrections``), never a tool mistake
hook_block         a hook or a permission rule blocked the call ("PreToolUse hook … blocked",
                   "permission denied by policy"): a team rule, not a tool quirk; not mined
harness_format     the harness rejected the agent's turn itself ("Please always provide EXACTLY ONE
                   action", a malformed tool call, an event that answers no call): not mined
expected_failure   a failure that is information: a search that found nothing (``grep``/``find``/``rg``
                   exit 1 with no output), a test run that fails on an assertion (TDD red, a
                   reproduction of the bug, a test that errors in a run that reported its results),
                   a reproduction script that shows the bug: not mined
agent_bug          the agent's own slip: a syntax/indentation/name error in code it just wrote, a file
                   it named that does not exist (``ls``/``cat``/``rm``: No such file): not mined
=================  ==================================================================================

Setup errors — ``ImproperlyConfigured``, ``AppRegistryNotReady``, ``ModuleNotFoundError``/``ImportError``,
``no such table``, ``command not found`` — are ``tool_error`` even inside a test run or a reproduction
script: they are what the environment needs, and a later session needs it too.
"""

from __future__ import annotations

from dreaming.signals.patterns import _sql_list

TOOL_ERROR = "tool_error"
USER_REJECTION = "user_rejection"
HOOK_BLOCK = "hook_block"
HARNESS_FORMAT = "harness_format"
EXPECTED_FAILURE = "expected_failure"
AGENT_BUG = "agent_bug"
FAILURE_CLASSES = (TOOL_ERROR, USER_REJECTION, HOOK_BLOCK, HARNESS_FORMAT, EXPECTED_FAILURE, AGENT_BUG)
MINEABLE = (TOOL_ERROR,)

REJECTION_RE = (r"(?i)the user doesn'?t want to (?:proceed|take this action)|user rejected (?:the |this )?tool"
                r"|tool use was rejected|\[request interrupted by user|interrupted by (?:the )?user"
                r"|user (?:declined|denied) (?:the |this )?(?:tool|action|request)")
HOOK_RE = (r"(?i)\bhook\b.{0,80}\b(?:block|blocked|denied|rejected|prevented)\b|\bpretooluse\b|\bposttooluse\b"
           r"|blocked by (?:a |the )?(?:hook|policy|permission)|permission (?:to use \S+ )?(?:was )?denied by"
           r"|not (?:allowed|permitted) by (?:the )?(?:policy|permission|settings)|requires (?:user )?approval")
FORMAT_RE = (r"(?i)exactly one action|format(?:ting)? (?:error|your response)|malformed (?:tool|function) call"
             r"|could not parse (?:your|the) (?:response|action|tool)|no tool named|unknown tool\b|invalid tool call")
SETUP_RE = (r"(?i)improperlyconfigured|appregistrynotready|modulenotfounderror|\bimporterror\b|no module named"
            r"|no such table|command not found|not installed|could not find a version|unable to import"
            r"|operationalerror|connection refused|permission denied|undefinedtable|undefinedcolumn|no such column"
            r"|(?:relation|database|role|table) \S+ does not exist|externally-managed-environment")
BUG_RE = (r"(?i)\b(?:syntaxerror|indentationerror|taberror|nameerror|unboundlocalerror)\b|unexpected eof"
          r"|unterminated (?:string|quoted)|sed: -e expression|bad substitution|syntax error near unexpected")
NO_SUCH_FILE_RE = r"(?i)no such file or directory|cannot access|can't open file|cannot stat|not a directory"
SEARCH_PROGRAMS = ("grep", "egrep", "fgrep", "rg", "ag", "ack", "find", "diff", "cmp", "test", "[", "which",
                   "command", "type", "pgrep", "git-grep", "fd", "locate")
FILE_PROGRAMS = ("ls", "cat", "rm", "rmdir", "cd", "cp", "mv", "head", "tail", "nl", "sed", "stat", "wc", "less",
                 "more", "file", "touch", "mkdir", "chmod", "write-file")
TEST_RE = (r"(?i)(?:^|[\s/])(?:pytest|py\.test|runtests\.py|tox|nox|unittest|jest|vitest|mocha|rspec|phpunit)\b"
           r"|\b(?:go|cargo|npm|yarn|pnpm|bun|make|mvn|gradle|dotnet|mix|manage\.py) (?:run )?test\b")
# an assertion-style failure: the code under test answered wrongly (not the environment)
ASSERT_RE = r"(?i)assertionerror|\bassert\b|^fail:|\bfailed\b.*\btests?\b|\btests? failed\b|!=|expected .* got"
# the runner ran the tests and reported their results (unittest/Django "Ran 12 tests … FAILED (errors=1)",
# "ERROR: test_x (mod.Class)", pytest's "= 1 failed, 3 passed ="): a test that errors is the code's answer
# jest/vitest "Tests: 1 failed, 4 passed", go "--- FAIL: TestX", cargo "test result: FAILED.", rspec
# "3 examples, 1 failure", mocha "1 failing", phpunit "Tests: 5, Assertions: 9, Failures: 1"
TEST_RAN_RE = (r"(?im)^ran \d+ tests? in |^(?:error|fail): test\w* \(|^failed \((?:failures|errors)="
               r"|^=+ .*\b\d+ (?:failed|passed|errors?)\b.* =+$|^\s*tests?(?: files)?:\s+\d+ failed"
               r"|^--- fail: \w+|^test result: failed\.|^\d+ examples?, \d+ failures?|^\s*\d+ failing$"
               r"|^tests: \d+, assertions: \d+, (?:failures|errors)")
REPRO_RE = r"(?i)(?:^|[/_\s-])(?:repro\w*|reproduc\w*|demo|bug|issue|check|verify|debug|test_issue)\w*\.(?:py|sh|js)"


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def classify_sql(*, text: str, is_result: str, failed_tool: str, program: str, command: str, rc: str) -> str:
    """A SQL CASE giving the failure class of one error row, over the given column expressions: the
    error text, whether it answers a tool call, the failed call's label and program, its command, and
    the exit code text ('' when none)."""
    return f"""CASE
        WHEN regexp_matches({text}, {_q(REJECTION_RE)}) THEN {_q(USER_REJECTION)}
        WHEN regexp_matches({text}, {_q(HOOK_RE)}) THEN {_q(HOOK_BLOCK)}
        WHEN NOT {is_result} OR {failed_tool} IS NULL OR regexp_matches({text}, {_q(FORMAT_RE)})
            THEN {_q(HARNESS_FORMAT)}
        WHEN regexp_matches({text}, {_q(SETUP_RE)}) THEN {_q(TOOL_ERROR)}
        WHEN {program} IN {_sql_list(SEARCH_PROGRAMS)} AND {rc} IN ('1', '')
             AND length(trim(regexp_replace({text}, '(?i)<[^>]*>|exit code:?\\s*\\d+', '', 'g'))) < 3
            THEN {_q(EXPECTED_FAILURE)}
        WHEN regexp_matches({text}, {_q(BUG_RE)}) THEN {_q(AGENT_BUG)}
        WHEN {program} IN {_sql_list(FILE_PROGRAMS)} AND regexp_matches({text}, {_q(NO_SUCH_FILE_RE)})
            THEN {_q(AGENT_BUG)}
        WHEN regexp_matches(coalesce({command}, ''), {_q(TEST_RE)})
             AND (regexp_matches({text}, {_q(ASSERT_RE)}) OR regexp_matches({text}, {_q(TEST_RAN_RE)}))
            THEN {_q(EXPECTED_FAILURE)}
        WHEN regexp_matches(coalesce({command}, ''), {_q(REPRO_RE)}) THEN {_q(EXPECTED_FAILURE)}
        WHEN {program} IN {_sql_list(SEARCH_PROGRAMS)} AND {rc} = '1' THEN {_q(EXPECTED_FAILURE)}
        ELSE {_q(TOOL_ERROR)} END"""
