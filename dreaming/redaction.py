"""Secret redaction: one detector for everything the system stores or writes.

``redact(text) -> (text, kinds)`` replaces every secret with ``[REDACTED:<kind>]`` and says which
kinds it found. Ingest applies it to each event's text, tool input and raw JSON (so the lake holds
no secret unless a user opts in), and a dream applies it again to everything it writes: memory
content and paths, changesets, reports, digests sent to Claude, artifacts.

The patterns are detect-secrets' regex plugins (the maintained catalogue of provider token
formats: AWS, GitHub, GitLab, Slack, Stripe, JWT, private keys, …), plus what it does not cover
or covers too loosely for free text: Anthropic and OpenAI keys, bearer tokens, whole PEM blocks,
``password=…``/``password is …`` phrases, AWS secret keys next to their name, and long mixed
tokens with high Shannon entropy. Clean text costs one scan of one combined expression.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache

MARK = "[REDACTED:{kind}]"
_MARK_RE = re.compile(r"\[REDACTED:[\w-]+\]")

# detect-secrets plugins whose patterns are precise enough for free text (the keyword, IP and
# hex/base64 entropy plugins flag ordinary prose and hashes; we have our own rules for those).
_DETECT_SECRETS_PLUGINS = {
    "AWSKeyDetector": "aws-access-key",
    "AzureStorageKeyDetector": "azure-storage-key",
    "BasicAuthDetector": "basic-auth",
    "DiscordBotTokenDetector": "discord-token",
    "GitHubTokenDetector": "github-token",
    "GitLabTokenDetector": "gitlab-token",
    "JwtTokenDetector": "jwt",
    "NpmDetector": "npm-token",
    "OpenAIDetector": "openai-key",
    "PypiTokenDetector": "pypi-token",
    "SendGridDetector": "sendgrid-key",
    "SlackDetector": "slack-token",
    "SquareOAuthDetector": "square-secret",
    "StripeDetector": "stripe-key",
    "TelegramBotTokenDetector": "telegram-token",
}

_VALUE = r"[^\s\"'`,;<>)\]}]"
# Our own rules: (kind, pattern, group to redact: 0 the whole match, -1 the first group that matched). Order matters: a span
# redacted by an earlier rule is not looked at again.
_OWN_RULES: list[tuple[str, str, int]] = [
    ("private-key", r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
                    r"|[\s\S]{0,4000})", 0),
    ("anthropic-key", r"\bsk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{20,}|\bsk-ant-[A-Za-z0-9_-]{20,}", 0),
    ("openai-key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{32,}", 0),
    ("stripe-key", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}", 0),
    ("github-token", r"\bgithub_pat_[A-Za-z0-9_]{22,}|\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}", 0),
    ("google-api-key", r"\bAIza[0-9A-Za-z_-]{35}", 0),
    ("slack-token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}", 0),
    ("huggingface-token", r"\bhf_[A-Za-z0-9]{30,}", 0),
    ("aws-secret-key", r"(?i)aws[\w.-]{0,20}?(?:secret|key)[\w.-]{0,20}?[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])", 1),
    ("bearer-token", r"(?i)\bbearer\s+([A-Za-z0-9._~+/=-]{12,})", 1),
    ("authorization", r"(?i)\bauthorization\s*[:=]\s*[\"']?(?:basic|token|digest)\s+([A-Za-z0-9._~+/=-]{8,})", 1),
    # name = value / name: value for secret-like names (also JSON "name": "value")
    ("credential", r"(?i)(?:\b|_)(?:password|passwd|pwd|passphrase|secret|secret[_-]?key|api[_-]?key|apikey|"
                   r"access[_-]?token|auth[_-]?token|refresh[_-]?token|client[_-]?secret|private[_-]?key|token)"
                   r"[\"']?\s*[:=]\s*[\"']?(" + _VALUE + r"{4,})", 1),
    # prose: "please use password hunter2", "the password is `s3cret!`": a quoted value, or one with a
    # digit or symbol ("the password is empty" is not a secret)
    ("password", r"(?i)\b(?:password|passwd|passphrase|passcode)(?:\s+(?:is|was|=|:))?\s+(?:[\"'`]("
                 + _VALUE + r"{4,})[\"'`]|((?=" + _VALUE + r"*[\d!@#$%^&*])" + _VALUE + r"{4,}))", -1),
]

# long tokens that look random: mixed classes and high entropy (base64-ish keys, session secrets);
# a run that continues a path, a dotted name or a word is part of something longer, not a token
_RUN_EDGE = frozenset("/.\\")
_ENTROPY_MIN = 4.3
# values that the credential rules must not redact (placeholders, our own marks, ordinary words)
_PLACEHOLDER = re.compile(r"(?i)^(?:\*+|x+|\.+|<[^>]*>|\$\{?\w+\}?|%\(?\w+\)?s?|none|null|true|false|"
                          r"required|optional|string|str|int|env|redacted.*|\[redacted.*|example|changeme|"
                          r"your[_-]?\w*|test|dummy|secret|password|token)$")
# "token: string", "password = new_password", "key=settings.SECRET_KEY", "pw = getpass(": code, not a secret
_CODE_VALUE = re.compile(r"^(?:[A-Za-z_]+|[A-Za-z_]\w*(?:\.\w+)+|.*[(\[{].*)$")


@lru_cache(maxsize=1)
def _rules() -> list[tuple[str, re.Pattern, int]]:
    from detect_secrets.plugins import (  # noqa: F401 - the maintained token catalogue
        aws, azure_storage_key, basic_auth, discord, github_token, gitlab_token, jwt, npm, openai, pypi_token,
        sendgrid, slack, square_oauth, stripe, telegram_token,
    )
    import detect_secrets.plugins as plugins_pkg

    rules: list[tuple[str, re.Pattern, int]] = [(k, re.compile(p), g) for k, p, g in _OWN_RULES]
    for mod_name in ("aws", "azure_storage_key", "basic_auth", "discord", "github_token", "gitlab_token", "jwt", "npm",
                     "openai", "pypi_token", "sendgrid", "slack", "square_oauth", "stripe", "telegram_token"):
        mod = getattr(plugins_pkg, mod_name)
        for cls_name, kind in _DETECT_SECRETS_PLUGINS.items():
            cls = getattr(mod, cls_name, None)
            if cls is None:
                continue
            for rx in cls().denylist:
                group = 1 if rx.groups else 0
                rules.append((kind, rx, group))
    return rules


# A cheap screen: the literal part of every rule above, or a long unbroken run (a token, or the
# body of a Telegram-style key). Text with neither cannot hold a secret that a rule finds.
# ``SCREEN_PATTERN`` is the same screen as one expression that RE2 accepts too, for columnar
# screening (pyarrow.compute.match_substring_regex(..., ignore_case=True)) before ``redact``.
TRIGGERS = (
    "sk-", "sk_", "rk_", "akia", "asia", "abia", "acca", "a3t", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
    "github_pat", "glpat-", "gldt-", "glft-", "glsoat-", "glrt-", "gr1348941", "glcbt-", "glimt-", "glptt-",
    "glagent-", "gloas-", "xox", "hooks.slack", "eyj", "-----begin", "putty-user", "bearer", "authoriz", "passw",
    "passphrase", "passcode", "pwd", "secret", "apikey", "api_key", "api-key", "token", "aiza", "hf_", "sg.",
    "sq0csp", "accountkey", "npm_", "pypi-", "private_key", "private-key", "://",
)
_RUN = r"[A-Za-z0-9+/_=-]{32,}"
SCREEN_PATTERN = "|".join(re.escape(t) for t in TRIGGERS) + "|" + _RUN


def screen(text: str) -> bool:
    """Whether ``text`` may hold a secret (False: it certainly holds none that ``redact`` finds)."""
    low = text.lower()
    return any(t in low for t in TRIGGERS) or _LONG_RUN.search(text) is not None


_LONG_RUN = re.compile(r"[A-Za-z0-9+/_=-]{32,}")


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
    """Values a credential rule matched that are not secrets (placeholders, plain words)."""
    if kind not in ("credential", "password"):
        return False
    v = value.strip("\"'`")
    if _PLACEHOLDER.match(v) or _MARK_RE.fullmatch(v):
        return True
    # "token: string", "password = getpass()": a plain lowercase word or a call is no secret
    return kind == "credential" and bool(_CODE_VALUE.match(v))


def find_secrets(text: str) -> list[tuple[int, int, str]]:
    """Spans ``(start, end, kind)`` of the secrets in ``text``, sorted, non-overlapping."""
    if not text:
        return []
    low = text.lower()
    keyed = any(t in low for t in TRIGGERS)
    runs = [m for m in _LONG_RUN.finditer(text) if _bounded(text, *m.span())]
    if not keyed and not runs:
        return []
    spans: list[tuple[int, int, str]] = []

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e, _ in spans)

    for kind, rx, group in _rules() if keyed else ():
        for m in rx.finditer(text):
            if group == -1:
                group_ = next((i for i in range(1, (rx.groups or 0) + 1) if m.start(i) >= 0), 0)
            else:
                group_ = group if group <= (rx.groups or 0) else 0
            a, b = m.span(group_)
            if a < 0 or a == b:
                continue
            value = text[a:b]
            if _MARK_RE.fullmatch(value) or _keep_value(kind, value) or not free(a, b):
                continue
            spans.append((a, b, kind))
    for m in runs:
        a, b = m.span()
        if free(a, b) and _looks_random(m.group()):
            spans.append((a, b, "high-entropy"))
    return sorted(spans)


def redact(text: str) -> tuple[str, list[str]]:
    """``text`` with every secret replaced by ``[REDACTED:<kind>]``, and the kinds found (sorted)."""
    if not text:
        return text, []
    spans = find_secrets(text)
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
    """Redact a pyarrow string array: RE2 screens the whole column at once (``SCREEN_PATTERN``), and
    only the few values it flags go through ``redact``. Returns the new array; the kinds found are
    counted into ``kinds`` (one count per value and kind)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(values) == 0 or values.null_count == len(values):
        return values
    flagged = pc.match_substring_regex(values, SCREEN_PATTERN, ignore_case=True).fill_null(False)
    idx = pc.indices_nonzero(flagged).to_pylist()
    if not idx:
        return values
    out = values.to_pylist()
    changed = False
    for i in idx:
        new, found = redact(out[i])
        if found:
            out[i] = new
            changed = True
            if kinds is not None:
                kinds.update(found)
    return pa.array(out, type=values.type) if changed else values


__all__ = ["MARK", "SCREEN_PATTERN", "entropy", "find_secrets", "has_secret", "redact", "redact_column", "screen"]
