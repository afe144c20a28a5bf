"""A property-based run over the OpenAPI document (schemathesis, a bounded number of examples per operation):
whatever the request, no 500, and every error is in Anthropic's shape with a known error type.

The app runs in-process (ASGI) on a lake holding one store with a memory, so that generated requests reach
real objects as well as missing ones; the key is sent with every case."""

from __future__ import annotations

import hashlib

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from tests.api.conftest import KEY_A

MAX_EXAMPLES = 10
ERROR_TYPES = {"invalid_request_error", "authentication_error", "permission_error", "not_found_error",
               "conflict_error", "memory_path_conflict_error", "memory_precondition_failed_error",
               "request_too_large", "rate_limit_error"}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    from dreaming.api import create_app
    from dreaming.settings import Settings
    from dreaming.store_edits import MemoryEditor
    from dreaming.catalog import Catalog
    from dreaming.stores import StoreService

    settings = Settings(home=tmp_path_factory.mktemp("schemathesis") / "lake")
    cat = Catalog(settings)
    store = StoreService(cat).create("fuzzed", scope="acme")
    _, memory = MemoryEditor(cat).create(store["id"], "/notes/a.md", "hello", {"type": "api", "id": "key:test"})
    app = create_app(settings, catalog=cat, keys={hashlib.sha256(KEY_A.encode()).hexdigest(): "acme"})
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.real_ids = {"memory_store_id": store["id"], "memory_id": memory.memory_id}  # for _aimed
    return schema


def _aimed(real_ids: dict):
    """Half of the cases address the lake's real store and memory instead of generated ids."""
    def aim(pair):
        case, real = pair
        if real and case.path_parameters and not (case.method == "DELETE" and case.path.endswith("{memory_store_id}")):
            # (the real store is never deleted: the operations after it would only see 404s)
            for k, v in real_ids.items():
                if k in case.path_parameters:
                    case.path_parameters[k] = v
        return case
    return aim


def _check(case) -> None:
    response = case.call(headers={"x-api-key": KEY_A})
    where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    assert response.status_code < 500, where
    if response.status_code >= 400:
        body = response.json()
        assert body.get("type") == "error", where
        assert body["error"]["type"] in ERROR_TYPES and body["error"]["message"], where
        rid = response.headers.get("request-id") or [""]  # schemathesis: header name -> list of values
        assert (rid[0] if isinstance(rid, list) else rid).startswith("req_"), where


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_500_and_every_error_in_anthropic_shape(api_schema, mode):
    """Every operation, ``MAX_EXAMPLES`` generated requests each: valid ones (positive) and ones that break
    the schema (negative). The failures of all operations are reported together."""
    from schemathesis import GenerationMode

    failures, operations = [], 0
    for result in api_schema.get_all_operations():
        op = result.ok()
        operations += 1

        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=st.tuples(op.as_strategy(generation_mode=GenerationMode(mode)), st.booleans())
               .map(_aimed(api_schema.real_ids)))
        def run(case):
            _check(case)

        try:
            run()
        except Unsatisfiable:  # negative: nothing breaks the schema of an operation whose only input is a string id
            continue
        except Exception as e:  # noqa: BLE001 - collected, reported below
            failures.append(f"{op.method.upper()} {op.path}: {str(e).splitlines()[0][:400]}")
    assert operations >= 24
    assert not failures, "\n".join(failures)
