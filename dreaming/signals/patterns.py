"""The text patterns the signal SQL uses: event types, outcome words, directive and injection phrases,
error lines and the masks that turn an error line into a signature."""

from __future__ import annotations

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


# Text a client puts inside a person's turn: system reminders, a local command's echo and output. Stripped
# before a person's statements are read (SQL) and before a correction's words are kept (people.py).
NOT_PERSON_RE = (r"(?s)<system-reminder>.*?</system-reminder>|<command-[\w-]+>.*?</command-[\w-]+>"
                 r"|<local-command-std\w+>.*?</local-command-std\w+>|<bash-std\w+>.*?</bash-std\w+>")
