"""Secret redaction: one detector for everything the system stores or writes.

``redact(text) -> (text, kinds)`` replaces every secret with ``[REDACTED:<kind>]`` and says which
kinds it found. Ingest applies it to each event's text, tool input and raw JSON (so the lake holds
no secret unless a user opts in), and a dream applies it again to everything it writes: memory
content and paths, changesets, reports, digests sent to Claude, artifacts.

The patterns are detect-secrets' regex plugins (the maintained catalogue of provider token
formats: AWS, GitHub, GitLab, Slack, Stripe, JWT, …), plus what it does not cover or covers too
loosely for free text: Anthropic and OpenAI keys, bearer tokens, whole PEM blocks, ``password=…``
and "password is …" phrases, AWS secret keys next to their name, and long mixed tokens with high
Shannon entropy.

Cost. Every token rule has *literals* (``sk-ant-``, ``akia``, ``ghp_`` …) one of which any match
contains; rules of a secret's name run only where a name stands before its value (``NAMED_ANCHOR``);
each rule runs only in the stretches around those places, so clean text costs a few ``in`` tests
and three small searches. For columns, ``flagged`` does the same screen with RE2 over the whole
column at once, and only the values it flags go through Python, with the rules of the families that
matched (``redact_column``; ingest's ``dreaming.ingest.secrets`` adds JSON care and originals).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

MARK = "[REDACTED:{kind}]"
_MARK_RE = re.compile(r"\[REDACTED:[\w-]+\]")


@dataclass(frozen=True)
class Rule:
    kind: str
    rx: re.Pattern
    group: int  # what to redact: 0 the whole match, n that group, -1 the first group that matched
    literals: tuple[str, ...]  # lowercase; a match always contains one of them


_VALUE = r"[^\s\"'`,;<>)\]}]"
_NAMES = (r"password|passwd|pwd|passphrase|secret|secret[_-]?key|api[_-]?key|apikey|access[_-]?token|auth[_-]?token"
          r"|refresh[_-]?token|client[_-]?secret|private[_-]?key|token")
# Rules of a secret's *name* are screened by where a name stands before ``=``/``:`` (or "password …",
# "Bearer …"), not by the name alone: "prompt_tokens" in every model-usage record is no secret.
NAMED = ("@named",)
NAMED_ANCHOR = (r"(?i)(?:password|passwd|pwd|passphrase|secret|api[_-]?key|apikey|token|private[_-]?key|authorization)"
                r"[\"']?\s*[:=]|(?:password|passwd|passphrase|passcode)\s+\S|bearer\s+\S|aws[\w.-]{0,20}(?:secret|key)")
BASIC = ("@basic",)
BASIC_ANCHOR = r"://[^\s/@:]+:[^\s/@]+@"

# Our own rules, in order: a span redacted by an earlier rule is not looked at again.
_OWN_RULES: list[tuple[str, str, int, tuple[str, ...]]] = [
    ("private-key", r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY"
                    r"(?: BLOCK)?-----|[\s\S]{0,4000})", 0, ("-----begin",)),
    ("anthropic-key", r"\bsk-ant-[A-Za-z0-9_-]{20,}", 0, ("sk-ant-",)),
    ("openai-key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{32,}", 0, ("sk-",)),
    ("stripe-key", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}", 0, ("k_live_", "k_test_")),
    ("github-token", r"\bgithub_pat_[A-Za-z0-9_]{22,}|\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}", 0,
     ("github_pat_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    ("google-api-key", r"\bAIza[0-9A-Za-z_-]{35}", 0, ("aiza",)),
    ("slack-token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}", 0, ("xox",)),
    ("huggingface-token", r"\bhf_[A-Za-z0-9]{30,}", 0, ("hf_",)),
    ("aws-secret-key", r"(?i)aws[\w.-]{0,20}?(?:secret|key)[\w.-]{0,20}?[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{40})"
                       r"(?![A-Za-z0-9/+=])", 1, NAMED),
    ("bearer-token", r"(?i)\bbearer\s+([A-Za-z0-9._~+/=-]{12,})", 1, NAMED),
    ("authorization", r"(?i)\bauthorization\s*[:=]\s*[\"']?(?:basic|token|digest)\s+([A-Za-z0-9._~+/=-]{8,})", 1, NAMED),
    # name = value / name: value for secret-like names (also JSON "name": "value")
    ("credential", r"(?i)(?:\b|_)(?:" + _NAMES + r")[\"']?\s*[:=]\s*[\"']?(" + _VALUE + r"{4,})", 1, NAMED),
    # prose: "please use password hunter2", "the password is `s3cret!`": a quoted value, or one with a
    # digit or symbol ("the password is empty" is not a secret)
    ("password", r"(?i)\b(?:password|passwd|passphrase|passcode)(?:\s+(?:is|was|=|:))?\s+(?:[\"'`](" + _VALUE
                 + r"{4,})[\"'`]|((?=" + _VALUE + r"*[\d!@#$%^&*])" + _VALUE + r"{4,}))", -1, NAMED),
]

# detect-secrets plugins whose patterns are precise enough for free text (its keyword, IP and
# hex/base64 entropy plugins flag ordinary prose and hashes; the rules above cover those), with the
# literals of their patterns. None: no literal (Discord, Telegram): they run where a long random
# run is (their tokens hold one).
_DETECT_SECRETS = {
    ("aws", "AWSKeyDetector"): ("aws-access-key", ("a3t", "abia", "acca", "akia", "asia")),
    ("azure_storage_key", "AzureStorageKeyDetector"): ("azure-storage-key", ("accountkey=",)),
    ("basic_auth", "BasicAuthDetector"): ("basic-auth", BASIC),
    ("discord", "DiscordBotTokenDetector"): ("discord-token", None),
    ("github_token", "GitHubTokenDetector"): ("github-token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    ("gitlab_token", "GitLabTokenDetector"): ("gitlab-token", ("glpat-", "gldt-", "glft-", "glsoat-", "glrt-",
                                                               "gr1348941", "glcbt-", "glimt-", "glptt-", "glagent-",
                                                               "gloas-")),
    ("jwt", "JwtTokenDetector"): ("jwt", ("eyj",)),
    ("npm", "NpmDetector"): ("npm-token", ("_authtoken",)),
    ("openai", "OpenAIDetector"): ("openai-key", ("t3blbkfj",)),
    ("pypi_token", "PypiTokenDetector"): ("pypi-token", ("pypi-age",)),
    ("sendgrid", "SendGridDetector"): ("sendgrid-key", ("sg.",)),
    ("slack", "SlackDetector"): ("slack-token", ("xox", "hooks.slack.com")),
    ("square_oauth", "SquareOAuthDetector"): ("square-secret", ("sq0csp-",)),
    ("stripe", "StripeDetector"): ("stripe-key", ("k_live_",)),
    ("telegram_token", "TelegramBotTokenDetector"): ("telegram-token", None),
}

# long tokens that look random: mixed classes and high entropy (base64-ish keys, session secrets);
# a run that continues a path, a dotted name or a word is part of something longer, not a token
_LONG_RUN = re.compile(r"[A-Za-z0-9+/_=-]{32,}")
_ALNUM_RUN = re.compile(r"[A-Za-z0-9]{32,}")  # 32+: tool-call ids (call_ + 24) are not tokens
_RUN_EDGE = frozenset("/.\\")
_ENTROPY_MIN = 4.3
# values that the credential rules must not redact (placeholders, our own marks, ordinary words)
_PLACEHOLDER = re.compile(r"(?i)^(?:\*+|x+|\.+|<[^>]*>|\$\{?\w+\}?|%\(?\w+\)?s?|none|null|true|false|"
                          r"required|optional|string|str|int|env|redacted.*|\[redacted.*|example|changeme|"
                          r"your[_-]?\w*|test|dummy|secret|password|token)$")
# "token: string", "password = new_password", "key=settings.SECRET_KEY", "pw = getpass(": code, not a secret
_CODE_VALUE = re.compile(r"^(?:[A-Za-z_]+|[A-Za-z_]\w*(?:\.\w+)+|.*[(\[{].*)$")


@lru_cache(maxsize=1)
def _rules() -> tuple[Rule, ...]:
    import importlib

    rules = [Rule(k, re.compile(p), g, lit) for k, p, g, lit in _OWN_RULES]
    for (mod_name, cls_name), (kind, literals) in _DETECT_SECRETS.items():
        cls = getattr(importlib.import_module(f"detect_secrets.plugins.{mod_name}"), cls_name)
        for rx in cls().denylist:
            rules.append(Rule(kind, rx, 1 if rx.groups else 0, literals or ()))
    return tuple(rules)


@lru_cache(maxsize=1)
def _literals() -> tuple[str, ...]:
    """The token literals (a provider's prefix), lowercase."""
    return tuple(sorted({lit for r in _rules() for lit in r.literals if not lit.startswith("@")}))


_NAMED_RE = re.compile(NAMED_ANCHOR)
_BASIC_RE = re.compile(BASIC_ANCHOR)


def screen_patterns() -> tuple[str, ...]:
    """The screen as expressions that both re and RE2 accept: token literals, a secret's name before
    its value, credentials in a URL, and a long random run. Text none of them matches holds no secret
    that ``find_secrets`` reports."""
    return ("(?i)" + "|".join(re.escape(x) for x in _literals()), NAMED_ANCHOR, BASIC_ANCHOR, _ALNUM_RUN.pattern)


def screen(text: str) -> bool:
    """Whether ``text`` may hold a secret (False: it certainly holds none that ``redact`` finds)."""
    if not text:
        return False
    low = text.lower()
    return (any(lit in low for lit in _literals()) or _NAMED_RE.search(text) is not None
            or _BASIC_RE.search(text) is not None or _ALNUM_RUN.search(text) is not None)


def screen_masks(values) -> dict[str, object]:
    """Per screen family (``FAMILIES``), which values of a pyarrow string array it matches (RE2, one
    pass per family; nulls are False)."""
    import pyarrow.compute as pc

    return {f: pc.fill_null(pc.match_substring_regex(values, p), False) for f, p in zip(FAMILIES, screen_patterns(),
                                                                                       strict=True)}


def flagged(values) -> list[tuple[int, frozenset[str]]]:
    """The positions of the values the screen flags, each with the families that matched it."""
    import pyarrow.compute as pc

    out: dict[int, set[str]] = {}
    for f, m in screen_masks(values).items():
        for i in pc.indices_nonzero(m).to_pylist():
            out.setdefault(i, set()).add(f)
    return [(i, frozenset(out[i])) for i in sorted(out)]


def _bounded(text: str, a: int, b: int) -> bool:
    return (a == 0 or text[a - 1] not in _RUN_EDGE) and (b == len(text) or text[b] not in _RUN_EDGE)


def entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values()) if n else 0.0


def _looks_random(tok: str) -> bool:
    classes = sum(bool(re.search(p, tok)) for p in (r"[a-z]", r"[A-Z]", r"\d"))
    if classes < 3 or "__" in tok or tok.count("-") + tok.count("_") > len(tok) // 6:
        return False  # identifiers, slugs, dashed names
    return entropy(tok) >= _ENTROPY_MIN


def _keep_value(kind: str, value: str) -> bool:
    """Values a credential rule matched that are not secrets (placeholders, plain words, code)."""
    if kind not in ("credential", "password"):
        return False
    v = value.strip("\"'`")
    if _PLACEHOLDER.match(v) or _MARK_RE.fullmatch(v):
        return True
    return kind == "credential" and bool(_CODE_VALUE.match(v))


def _span(rule: Rule, m: re.Match) -> tuple[int, int]:
    group = rule.group
    if group == -1:
        group = next((i for i in range(1, rule.rx.groups + 1) if m.start(i) >= 0), 0)
    elif group > rule.rx.groups:
        group = 0
    return m.span(group)


_BEFORE, _AFTER = 256, 8192  # how far a match may start before its literal, and end after it


def _windows(low: str, literals: tuple[str, ...]) -> list[tuple[int, int]]:
    """The stretches of the text around each occurrence of a literal (merged), where a rule can match.

    Searching only there keeps a long text with one ``token`` in it (a JSON body with
    ``prompt_tokens``) from costing a full regex scan per rule."""
    hits = []
    for lit in literals:
        i = low.find(lit)
        while i >= 0:
            hits.append(i)
            i = low.find(lit, i + 1)
    return _merge(hits, len(low))


def _merge(hits: list[int], n: int) -> list[tuple[int, int]]:
    """Merged windows around the positions ``hits``."""
    if not hits:
        return []
    out: list[list[int]] = []
    for i in sorted(hits):
        lo, hi = max(0, i - _BEFORE), min(n, i + _AFTER)
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


FAMILIES = ("token", "named", "basic", "random")
"""The screen's families, in the order of ``screen_patterns()``."""


def find_secrets(text: str, families: frozenset[str] | set[str] | None = None) -> list[tuple[int, int, str]]:
    """Spans ``(start, end, kind)`` of the secrets in ``text``, sorted, non-overlapping.

    ``families``: the screen families known to match ``text`` (``screen_masks`` tells, per value of a
    column); the others are not looked for. None: all are looked for."""
    if not text:
        return []
    fam = FAMILIES if families is None else families
    low = text.lower()
    if len(low) != len(text):  # lower() changed the length (rare letters): positions must match
        low = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    present = {lit for lit in _literals() if lit in low} if "token" in fam else set()
    named = [m.start() for m in _NAMED_RE.finditer(text)] if "named" in fam else []
    basic = [m.start() for m in _BASIC_RE.finditer(text)] if "basic" in fam else []
    random_run = "random" in fam and _ALNUM_RUN.search(text) is not None
    if not (present or named or basic or random_run):
        return []
    spans: list[tuple[int, int, str]] = []

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e, _ in spans)

    for rule in _rules():
        if rule.literals == NAMED:
            windows = _merge(named, len(text))
        elif rule.literals == BASIC:
            windows = _merge(basic, len(text))
        elif rule.literals:
            lits = present.intersection(rule.literals)
            windows = _windows(low, tuple(lits)) if lits else []
        else:
            windows = [(0, len(text))] if random_run else []
        for m in (m for lo, hi in windows for m in rule.rx.finditer(text, lo, hi)):
            a, b = _span(rule, m)
            if a < 0 or a == b:
                continue
            value = text[a:b]
            if _MARK_RE.fullmatch(value) or _keep_value(rule.kind, value) or not free(a, b):
                continue
            spans.append((a, b, rule.kind))
    if random_run:
        for m in _LONG_RUN.finditer(text):
            a, b = m.span()
            tok = m.group()
            if _bounded(text, a, b) and _ALNUM_RUN.search(tok) and free(a, b) and _looks_random(tok):
                spans.append((a, b, "high-entropy"))
    return sorted(spans)


def redact(text: str, families: frozenset[str] | set[str] | None = None) -> tuple[str, list[str]]:
    """``text`` with every secret replaced by ``[REDACTED:<kind>]``, and the kinds found (sorted).
    ``families`` as for ``find_secrets``."""
    if not text:
        return text, []
    spans = find_secrets(text, families)
    if not spans:
        return text, []
    out, pos = [], 0
    for a, b, kind in spans:
        out.append(text[pos:a])
        out.append(MARK.format(kind=kind))
        pos = b
    out.append(text[pos:])
    return "".join(out), sorted({k for _, _, k in spans})


def has_secret(text: str | None) -> bool:
    return bool(text) and bool(find_secrets(text))


def redact_column(values, kinds: Counter | None = None):
    """Redact a pyarrow string array: RE2 screens the whole column at once (``flagged``), and
    only the values it flags go through ``redact``. Returns the new array (the same one when nothing
    changed); the kinds found are counted into ``kinds`` (one count per value and kind)."""
    import pyarrow as pa

    if len(values) == 0 or values.null_count == len(values):
        return values
    hits = flagged(values)
    if not hits:
        return values
    out = values.to_pylist()
    changed = False
    for i, fams in hits:
        new, found = redact(out[i], fams)
        if found:
            out[i] = new
            changed = True
            if kinds is not None:
                kinds.update(found)
    return pa.array(out, type=values.type) if changed else values


__all__ = ["FAMILIES", "MARK", "Rule", "entropy", "flagged", "screen_masks", "find_secrets", "has_secret", "redact", "redact_column", "screen",
           "screen_patterns"]
