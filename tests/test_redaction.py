"""dreaming.redaction: every secret kind is found and replaced; ordinary text is left alone."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pytest

from dreaming.redaction import find_secrets, redact, redact_column, screen

# (kind, text containing it, the secret itself). Test values only: none of these is a real credential.
SECRETS = [
    ("anthropic-key", "export ANTHROPIC_API_KEY=sk-ant-api03-Xq9vL2mN8pR4tY6wZ1aB3cD5eF7gH9iJ0kL2mN4oP6q",
     "sk-ant-api03-Xq9vL2mN8pR4tY6wZ1aB3cD5eF7gH9iJ0kL2mN4oP6q"),
    ("aws-access-key", "the key id is AKIAZ7Q3X4M5N6P7R8S9 for prod", "AKIAZ7Q3X4M5N6P7R8S9"),
    ("aws-secret-key", "aws_secret_access_key = Zx8/Qw7+Er6Ty5Ui4Op3As2Df1Gh0Jk9Lz8Xc7Vb",
     "Zx8/Qw7+Er6Ty5Ui4Op3As2Df1Gh0Jk9Lz8Xc7Vb"),
    ("github-token", "git clone https://github.com/acme/x using ghp_Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8",
     "ghp_Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8"),
    ("stripe-key", "charge with sk_live_51HqLyjWDarjtT1zdp7dcXyZ9", "sk_live_51HqLyjWDarjtT1zdp7dcXyZ9"),
    ("bearer-token", "curl -H 'Authorization: Bearer abc.DEF-ghi_123456789xyz' https://api.internal",
     "abc.DEF-ghi_123456789xyz"),
    ("password", "please use password hunter2 for the staging box", "hunter2"),
    ("credential", 'DATABASE = {"password": "Tr0ub4dor&3"}', "Tr0ub4dor&3"),
    ("slack-token", "SLACK_BOT=xoxb-2048-4096-aBcDeFgHiJkL", "xoxb-2048-4096-aBcDeFgHiJkL"),
    ("private-key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7x\n-----END RSA PRIVATE KEY-----",
     "MIIEpAIBAAKCAQEA7x"),
    ("basic-auth", "DATABASE_URL=postgres://app:s3cretPw@db.internal:5432/app", "s3cretPw"),
    ("jwt", "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpM",
     "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0"),
    ("openai-key", "OPENAI_API_KEY=sk-proj-Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2Yz3", "sk-proj-Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2Yz3"),
    ("google-api-key", "maps key AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"),
]

CLEAN = [
    "Use pytest, not unittest",
    "the password reset flow is broken; what if the password is empty?",
    "commit 3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f fixed it",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "/usr/lib/python3/site-packages/django/db/backends/sqlite3/base.py",
    "tests/test_views.py::TestAdminViews::test_changelist_view_with_many_filters",
    "flight HAT123 on 2024-05-01, reservation 8JX2WO",
    "password: <your password>",
    "Set DATABASE_PASSWORD=${DB_PASS}",
    "token: string",
    "key=settings.SECRET_KEY",
]


@pytest.mark.parametrize(("kind", "text", "secret"), SECRETS, ids=[s[0] for s in SECRETS])
def test_each_secret_kind_is_redacted(kind, text, secret):
    out, kinds = redact(text)
    assert secret not in out
    assert f"[REDACTED:{kind}]" in out, out
    assert kind in kinds
    assert screen(text)


def test_at_least_ten_kinds_are_covered():
    assert len({k for k, _, _ in SECRETS}) >= 10


@pytest.mark.parametrize("text", CLEAN)
def test_ordinary_text_is_left_alone(text):
    assert redact(text) == (text, [])


def test_redaction_is_idempotent_and_keeps_surrounding_text():
    text = "run it with ghp_Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8 then push"
    once, _ = redact(text)
    assert once.startswith("run it with [REDACTED:") and once.endswith(" then push")
    assert redact(once) == (once, [])


def test_spans_do_not_overlap():
    text = "Authorization: Bearer sk-ant-api03-Xq9vL2mN8pR4tY6wZ1aB3cD5eF7gH9iJ0kL2mN4oP6q"
    spans = find_secrets(text)
    assert spans and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert "sk-ant" not in redact(text)[0]


def test_column_redaction_counts_kinds_and_keeps_clean_values():
    kinds: Counter = Counter()
    col = pa.array(["hello", None, SECRETS[1][1], CLEAN[0]])
    out = redact_column(col, kinds).to_pylist()
    assert out[0] == "hello" and out[1] is None and out[3] == CLEAN[0]
    assert SECRETS[1][2] not in out[2]
    assert kinds == Counter({"aws-access-key": 1})
    clean = pa.array(CLEAN)
    assert redact_column(clean) is clean  # nothing flagged: the same array back


def test_flagged_values_carry_the_families_that_matched_and_redaction_agrees():
    from dreaming.redaction import flagged

    col = pa.array(["plain words", "key AKIAZ7Q3X4M5N6P7R8S9 here", "password = Tr0ub4dor&3", None,
                    '{"usage": {"prompt_tokens": 12, "completion_tokens": 3}}'])
    hits = dict(flagged(col))
    assert set(hits) == {1, 2}  # prompt_tokens is no secret's name before its value
    assert "token" in hits[1] and "named" in hits[2]
    for i, fams in hits.items():
        assert redact(col[i].as_py(), fams) == redact(col[i].as_py())  # the families lose nothing
