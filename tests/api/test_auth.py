"""API keys from DREAMS_API_KEYS (no server needed), and `dreams api` refusing to start without any."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from dreaming.api.auth import KeyRing, parse_keys
from dreaming.errors import BadInput, Unauthenticated


def test_keys_from_pairs_and_from_a_json_file_with_digests(tmp_path):
    ring = KeyRing(parse_keys("k1=acme, k2=globex"))
    assert ring.principal("k1").tenant == "acme" and ring.principal("k2").tenant == "globex"
    assert "k1" not in ring.principal("k1").key_id  # the actor never holds the key
    f = tmp_path / "keys.json"
    f.write_text(json.dumps({"plain-key": "acme", "sha256:" + hashlib.sha256(b"hashed-key").hexdigest(): "globex"}))
    ring = KeyRing(parse_keys(str(f)))
    assert ring.principal("plain-key").tenant == "acme" and ring.principal("hashed-key").tenant == "globex"
    for bad in (None, "", "k3", "sha256:" + hashlib.sha256(b"hashed-key").hexdigest()):
        with pytest.raises(Unauthenticated):
            ring.principal(bad)


@pytest.mark.parametrize("spec", ["k1", "k1=", "k1=acme/agent", "k1=bad tenant"])
def test_bad_key_settings_are_refused(spec):
    with pytest.raises(BadInput):
        parse_keys(spec)


def test_a_bad_keys_file_names_the_file(tmp_path):
    f = tmp_path / "keys.json"
    f.write_text("[1, 2]")
    with pytest.raises(BadInput, match="keys.json"):
        parse_keys(str(f))


def test_dreams_api_without_keys_exits_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DREAMS_API_KEYS"}
    env["DREAMS_HOME"] = str(tmp_path / "lake")
    r = subprocess.run([sys.executable, "-c", "from dreaming.cli import main; main()", "api", "--port", "0"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "DREAMS_API_KEYS" in r.stderr, r.stderr
