"""Webhooks on a dream's events (dreaming.notifications), against a real HTTP receiver on 127.0.0.1
(``http.server`` on a thread): the signature verifies, a 500 is retried, nothing is sent twice for one
event, a failure never fails the dream, and a dream through the real flow that ends awaiting approval
notifies once."""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from dreaming import notifications
from dreaming.catalog import Catalog
from dreaming.dreams import DreamService
from dreaming.promotion import promote, request_approval, review
from tests.pg import backend_lake, lake_both  # noqa: F401 - fixtures
from tests.test_promotion import default_changes, make_dream

SECRET = "s3cret-for-tests"

# --- a webhook receiver on loopback ---------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    def verified(self, secret: str = SECRET) -> bool:
        return notifications.verify(secret, self.body, self.headers.get("x-dreams-signature"),
                                    self.headers.get("x-dreams-timestamp"))


@dataclass
class Receiver:
    """Records every POST; answers with the queued statuses, then ``default``."""

    default: int = 200
    statuses: deque = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook") -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def answer(self, *statuses: int) -> None:
        self.statuses.extend(statuses)

    def posts(self, path: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.received if path is None or r.path == path]


@pytest.fixture
def receiver():
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with rec.lock:
                status = rec.statuses.popleft() if rec.statuses else rec.default
                rec.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                             status))
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else b"receiver says no")

        def log_message(self, *args):
            pass

    rec.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=rec.server.serve_forever, daemon=True)
    thread.start()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


@pytest.fixture
def hooked(lake, monkeypatch, receiver):
    """Webhooks on: the receiver is DREAMS_WEBHOOK_URL, signed with SECRET; retries without waiting."""
    monkeypatch.setenv("DREAMS_WEBHOOK_URL", receiver.url())
    monkeypatch.setenv("DREAMS_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("DREAMS_WEBHOOK_BACKOFF_S", "0")
    return receiver


@pytest.fixture
def catalog(hooked):
    """The lake's catalog, with the settings as the environment now has them (webhooks on)."""
    return Catalog()


def rows(catalog, dream_id=None):
    return notifications.deliveries(catalog, dream_id)


# --- signature ------------------------------------------------------------------------------------


def test_signature_covers_the_body_and_the_timestamp():
    body = b'{"event": "promoted"}'
    sig = notifications.sign(SECRET, body, 1_800_000_000)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert notifications.verify(SECRET, body, sig, "1800000000", now=1_800_000_010)
    assert not notifications.verify(SECRET, body + b" ", sig, "1800000000", now=1_800_000_010)  # body changed
    assert not notifications.verify(SECRET, body, sig, "1800000001", now=1_800_000_010)  # timestamp changed
    assert not notifications.verify("other", body, sig, "1800000000", now=1_800_000_010)  # another secret
    assert not notifications.verify(SECRET, body, sig, "1800000000", now=1_800_000_000 + 301)  # too old: replay
    assert not notifications.verify(SECRET, body, None, "1800000000")


# --- exactly once, retries, failures (SQLite and PostgreSQL) -----------------------------------------

lake = lake_both


def test_awaiting_approval_notifies_once_signed_with_the_dream_and_its_diff(catalog, hooked):
    d = make_dream(catalog, require_approval=True)
    request_approval(catalog, d.id)
    request_approval(catalog, d.id)  # the emitting path twice: one delivery
    notifications.emit(catalog, d.id)  # and once more by hand
    posts = hooked.posts()
    assert len(posts) == 1, [p.json["event"] for p in posts]
    p = posts[0]
    assert p.verified()
    assert p.headers["x-dreams-event"] == "awaiting_approval"
    assert p.headers["x-dreams-delivery"] == f"{d.id}:awaiting_approval"
    body = p.json
    store = catalog.get_store(d.store_id)
    assert body["type"] == "dream.awaiting_approval"
    assert body["dream"]["id"] == d.id and body["dream"]["promotion"] == "awaiting_approval"
    assert body["store"] == {"id": store["id"], "name": store["name"]}
    assert body["counts"] == {"update": 1, "add": 1, "prune": 1}
    diff = body["diff"]
    assert diff["total"] == 3 and diff["truncated"] == 0
    assert sorted(c["op"] for c in diff["changes"]) == ["add", "prune", "update"]  # keeps are left out
    assert {"change_id", "op", "path", "reason"} <= set(diff["changes"][0])
    assert body["links"]["diff"] == f"dreams diff {d.id}"
    assert body["links"]["approve"] == f"dreams approve {d.id}"
    [row] = rows(catalog, d.id)
    assert (row["event"], row["status"], row["attempts"], row["last_error"]) == ("awaiting_approval", "delivered",
                                                                                 1, None)
    assert row["target"] == hooked.url() and row["delivered_at"] is not None


def test_a_500_is_retried_with_backoff_until_it_is_delivered(catalog, hooked, monkeypatch):
    hooked.answer(500, 502)
    d = make_dream(catalog)
    out = promote(catalog, d.id, "auto")
    assert out.promotion.state == "promoted"
    posts = hooked.posts()
    assert [p.status for p in posts] == [500, 502, 200]
    assert all(p.verified() for p in posts)  # each attempt signed afresh
    assert {p.headers["x-dreams-delivery"] for p in posts} == {f"{d.id}:promoted"}
    assert posts[-1].json["dream"]["promoted_version"] == out.promotion.promoted_version
    [row] = rows(catalog, d.id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 3, None)
    promote(catalog, d.id, "auto")  # already promoted: returned as is, nothing sent again
    assert len(hooked.posts()) == 3


def test_the_backoff_doubles(lake, monkeypatch, receiver):
    monkeypatch.setenv("DREAMS_WEBHOOK_BACKOFF_S", "0.25")
    from dreaming.settings import get_settings

    receiver.default = 503
    slept: list[float] = []
    target = notifications.Target(receiver.url(), SECRET, "setting")
    attempts, error = notifications.deliver(get_settings(), target, b"{}", "promoted", "k", sleep=slept.append)
    assert (attempts, slept) == (4, [0.25, 0.5, 1.0])
    assert error.startswith("HTTP 503")


def test_a_failed_delivery_never_fails_the_dream_and_retry_sends_it(catalog, hooked):
    hooked.default = 500
    d = make_dream(catalog)
    out = promote(catalog, d.id, "auto")
    assert out.promotion.state == "promoted"  # the dream is promoted all the same
    assert len(hooked.posts()) == 4  # 1 + DREAMS_WEBHOOK_RETRIES (3)
    [row] = rows(catalog, d.id)
    assert (row["status"], row["attempts"]) == ("failed", 4) and row["last_error"].startswith("HTTP 500")
    notifications.emit(catalog, d.id)  # emitting again does not resend a failed one: that is --retry's job
    assert len(hooked.posts()) == 4
    hooked.default = 200
    [again] = notifications.retry(catalog, d.id)
    assert (again["status"], again["attempts"], again["last_error"]) == ("delivered", 5, None)
    assert len(hooked.posts()) == 5 and hooked.posts()[-1].verified()
    assert notifications.retry(catalog, d.id) == []  # nothing left to send


def test_a_4xx_is_not_retried(catalog, hooked):
    hooked.answer(410)
    d = make_dream(catalog, require_approval=True)
    request_approval(catalog, d.id)
    [row] = rows(catalog, d.id)
    assert (row["status"], row["attempts"]) == ("failed", 1) and row["last_error"].startswith("HTTP 410")


def test_a_dead_receiver_is_retried_and_recorded(lake, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("DREAMS_WEBHOOK_URL", f"http://127.0.0.1:{port}/hook")
    monkeypatch.setenv("DREAMS_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("DREAMS_WEBHOOK_BACKOFF_S", "0")
    catalog = Catalog()
    d = make_dream(catalog)
    assert promote(catalog, d.id, "auto").promotion.state == "promoted"
    [row] = rows(catalog, d.id)
    assert (row["status"], row["attempts"]) == ("failed", 4) and "ConnectError" in row["last_error"]


def test_no_secret_sends_nothing_unsigned(lake, receiver, monkeypatch):
    monkeypatch.setenv("DREAMS_WEBHOOK_URL", receiver.url())
    monkeypatch.delenv("DREAMS_WEBHOOK_SECRET", raising=False)
    catalog = Catalog()
    d = make_dream(catalog)
    assert promote(catalog, d.id, "auto").promotion.state == "promoted"
    assert receiver.posts() == []
    [row] = rows(catalog, d.id)
    assert (row["status"], row["attempts"]) == ("failed", 0) and "DREAMS_WEBHOOK_SECRET" in row["last_error"]


def test_a_failed_dream_notifies_with_its_error(catalog, hooked):
    from dreaming.models import Dream

    store = catalog.get_store(make_dream(catalog).store_id)
    d = Dream(store_id=store["id"], status="running")
    catalog.insert_dream(d)
    DreamService(catalog).fail(d.id, "input_session_unavailable", "session sesn_x is gone")
    DreamService(catalog).fail(d.id, "input_session_unavailable", "again")  # terminal: no second event
    [p] = hooked.posts()
    assert p.verified() and p.json["event"] == "failed"
    assert p.json["dream"]["error"] == {"type": "input_session_unavailable", "message": "session sesn_x is gone"}


def test_gate_failed_on_promotion_notifies(catalog, hooked):
    def two_with_one_path(rows):  # paths must be unique in a store: a blocking expectation
        return [*rows, {**rows[0], "memory_id": "mem_dup"}]

    d = make_dream(catalog, candidate_rows=two_with_one_path)
    out = promote(catalog, d.id, "auto")
    assert out.promotion.state == "gate_failed", out.promotion
    promote_again = catalog.get_dream(d.id)
    assert promote_again.promotion.state == "gate_failed"
    [p] = hooked.posts()
    assert p.verified() and p.json["event"] == "gate_failed"
    assert "paths_unique" in p.json["dream"]["reason"]


def test_automatic_mode_per_change_notifies(catalog, hooked):
    from dreaming.promotion import promote_auto

    d = make_dream(catalog)
    out = promote_auto(catalog, d.id)  # what the flow's per-change step calls
    assert out.promotion.state == "promoted"
    [p] = hooked.posts()
    assert p.verified() and p.json["event"] == "promoted"


def test_a_dream_the_reaper_fails_notifies(catalog, hooked):
    from datetime import timedelta

    from dreaming.models import Dream, utcnow
    from flows.hooks import reap_stale

    store = catalog.get_store(make_dream(catalog).store_id)
    d = Dream(store_id=store["id"], status="pending", created_at=utcnow() - timedelta(hours=2))  # nobody ran it
    catalog.insert_dream(d)
    assert reap_stale(store["name"]) == [d.id]
    [p] = hooked.posts()
    assert p.verified() and p.json["event"] == "failed" and p.json["dream"]["error"]["type"] == "crashed"
    assert reap_stale(store["name"]) == [] and len(hooked.posts()) == 1


def test_a_store_webhook_replaces_the_setting_and_an_empty_one_silences_it(catalog, hooked, monkeypatch):
    d1 = make_dream(catalog)
    store = catalog.get_store(d1.store_id)
    catalog.update_store(store["id"], metadata={"webhook_url": hooked.url("/store"),
                                                "webhook_secret_env": "TEAM_HOOK_SECRET"})
    monkeypatch.setenv("TEAM_HOOK_SECRET", "team-secret")
    promote(catalog, d1.id, "auto")
    [p] = hooked.posts()
    assert p.path == "/store" and p.verified("team-secret") and not p.verified(SECRET)
    catalog.update_store(store["id"], metadata={"webhook_url": ""})
    d2 = make_dream(catalog, store=catalog.get_store(store["id"]), changes=[default_changes()[1]])
    assert promote(catalog, d2.id, "auto").promotion.state == "promoted"
    assert len(hooked.posts()) == 1 and rows(catalog, d2.id) == []  # no target: nothing claimed


def test_a_deployments_webhooks_are_kept_with_the_dream(catalog, hooked):
    d = make_dream(catalog, require_approval=True)
    notifications.subscribe(catalog.settings, d.id, [hooked.url("/deployment")])
    request_approval(catalog, d.id)
    assert sorted(p.path for p in hooked.posts()) == ["/deployment", "/hook"]  # the deployment's and the setting's
    out = review(catalog, d.id, approve=True, decided_by="carol")  # another process would read the same file
    assert out.action == "promoted"
    events = sorted((p.path, p.json["event"]) for p in hooked.posts())
    assert events == [("/deployment", "awaiting_approval"), ("/deployment", "promoted"),
                      ("/hook", "awaiting_approval"), ("/hook", "promoted")]
    assert all(p.verified() for p in hooked.posts())
    from dreaming.errors import BadInput

    with pytest.raises(BadInput, match="not an http"):
        notifications.subscribe(catalog.settings, d.id, ["ftp://example.org/x"])


# --- the CLI ----------------------------------------------------------------------------------------


def test_cli_lists_and_retries_deliveries(catalog, hooked):
    from dreaming.cli import app

    hooked.default = 500
    d = make_dream(catalog)
    promote(catalog, d.id, "auto")
    runner = CliRunner()
    r = runner.invoke(app, ["notifications", d.id, "--json"])
    assert r.exit_code == 1, r.output  # a failed delivery: exit 1
    [row] = json.loads(r.stdout)["data"]
    assert (row["event"], row["status"], row["attempts"]) == ("promoted", "failed", 4)
    assert row["target"] == hooked.url().rsplit("/", 1)[0] + "/…"  # the path (often the credential) is not shown
    hooked.default = 200
    r = runner.invoke(app, ["notifications", d.id, "--retry", "--json"])
    assert r.exit_code == 0, r.output
    assert [x["status"] for x in json.loads(r.stdout)["data"]] == ["delivered"]
    r = runner.invoke(app, ["notifications", "--status", "delivered"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and d.id in r.output
    r = runner.invoke(app, ["notifications", "--status", "sent"])
    assert type(r.exception).__name__ == "BadInput" and "choose one of" in str(r.exception)  # exit 2 from `dreams`


def test_cli_sets_a_stores_webhook(lake):
    from dreaming.cli import app
    from dreaming.stores import StoreService

    catalog = Catalog()
    StoreService(catalog).create("hooked-store", scope="acme")
    runner = CliRunner()
    r = runner.invoke(app, ["store", "webhook", "hooked-store", "--url", "https://hooks.example.org/a",
                            "--secret-env", "TEAM_SECRET", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["webhook_url"] == "https://hooks.example.org/a"
    assert catalog.get_store("hooked-store")["metadata"] == {"webhook_url": "https://hooks.example.org/a",
                                                             "webhook_secret_env": "TEAM_SECRET"}
    r = runner.invoke(app, ["store", "webhook", "hooked-store", "--url", "hooks.example.org"])
    assert type(r.exception).__name__ == "BadInput" and "not an http(s) URL" in str(r.exception)
    runner.invoke(app, ["store", "webhook", "hooked-store", "--none"])
    assert catalog.get_store("hooked-store")["metadata"] == {"webhook_url": "", "webhook_secret_env": "TEAM_SECRET"}
    runner.invoke(app, ["store", "webhook", "hooked-store", "--clear"])
    assert catalog.get_store("hooked-store")["metadata"] == {}


# --- through the real dream flow ------------------------------------------------------------------


@pytest.mark.flow
@pytest.mark.gx
def test_a_dream_through_the_flow_that_awaits_approval_notifies_once(prefect_harness, hooked):
    from datetime import timedelta

    from dreaming import ids
    from dreaming.stores import StoreService
    from flows.dream import run_dream_to_state
    from tests.factories import T0, write_sessions

    catalog = Catalog()
    store = StoreService(catalog).create("notified", scope="acme")
    write_sessions(catalog.settings, [
        {"session_id": f"sesn_hook_{i}", "start": T0 + timedelta(hours=i),
         "events": [("user", "always use uv, never pip"), ("assistant", "done")]}
        for i in range(3)
    ])
    dream_id = ids.new_id(ids.DREAM)
    params = dict(store="notified", require_approval=True, approval_timeout_s=0, dream_id=dream_id,
                  webhooks=[hooked.url("/deployment")])
    state = run_dream_to_state(**params)
    assert state.name == "AwaitingApproval", state
    state = run_dream_to_state(**params)  # the same dream again (a re-run resumes it): nothing sent twice
    assert state.name == "AwaitingApproval", state
    d = catalog.get_dream(dream_id)
    assert d.promotion.state == "awaiting_approval"
    posts = hooked.posts()
    assert sorted(p.path for p in posts) == ["/deployment", "/hook"], [(p.path, p.json["event"]) for p in posts]
    for p in posts:
        assert p.verified() and p.json["event"] == "awaiting_approval"
        assert p.json["store"] == {"id": store["id"], "name": "notified"}
        assert p.json["counts"] and p.json["diff"]["changes"]
        run_id = p.json["dream"]["flow_run_id"]  # the first run's (the re-run took the dream over after)
        assert run_id and p.json["links"]["flow_run"].endswith(f"/runs/flow-run/{run_id}")
    assert [r["status"] for r in rows(catalog, dream_id)] == ["delivered", "delivered"]
    # the reviewer approves from the CLI: one `promoted` to each target, from this (other) process
    out = review(catalog, dream_id, approve=True, decided_by="carol")
    assert out.dream.promotion.state == "promoted"
    assert sorted((p.path, p.json["event"]) for p in hooked.posts()[2:]) == [("/deployment", "promoted"),
                                                                               ("/hook", "promoted")]


@pytest.mark.flow
def test_the_documented_prefect_automation_is_accepted_by_prefect(prefect_harness):
    """docs/review.md: a Slack webhook block and the automation that sends it on the dream flow's states."""
    from prefect.automations import Automation
    from prefect.blocks.notifications import SlackWebhook

    block_id = SlackWebhook(url="https://hooks.slack.com/services/T000/B000/XXXX").save("dreams-reviewers",
                                                                                          overwrite=True)
    created = Automation.model_validate(notifications.prefect_automation(block_id)).create()
    try:
        back = Automation.read(id=created.id)
        assert back.name == "dreams: tell the reviewers" and back.enabled
        assert set(back.trigger.expect) == set(notifications.PREFECT_EVENTS)
        assert back.trigger.match_related.root == {"prefect.resource.role": "flow", "prefect.resource.name": "dream"}
        assert str(back.actions[0].block_document_id) == str(block_id)
    finally:
        created.delete()


@pytest.mark.flow
@pytest.mark.gx
def test_the_prefect_automation_fires_when_a_dream_awaits_approval(prefect_harness, lake, receiver):
    """Prefect's own route end to end: the automation of ``prefect_automation`` with a Custom Webhook block
    pointed at the loopback receiver (a Slack webhook block is the same with Slack's URL) POSTs when a
    dream run ends AwaitingApproval."""
    import time
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from dreaming.stores import StoreService
    from flows.dream import run_dream_to_state
    from tests.factories import T0, write_sessions

    block_id = CustomWebhookNotificationBlock(name="dreams", url=receiver.url("/prefect"),
                                              json_data={"text": "{{subject}}\n{{body}}"}).save(
        "dreams-test-reviewers", overwrite=True)
    automation = Automation.model_validate(notifications.prefect_automation(block_id, name="dreams test")).create()
    try:
        catalog = Catalog()
        StoreService(catalog).create("prefect-notified", scope="acme")
        write_sessions(catalog.settings, [
            {"session_id": f"sesn_auto_{i}", "start": T0 + timedelta(hours=i),
             "events": [("user", "always use uv, never pip"), ("assistant", "done")]} for i in range(3)])
        time.sleep(2)  # the triggers service picks up the new automation
        state = run_dream_to_state(store="prefect-notified", require_approval=True, approval_timeout_s=0)
        assert state.name == "AwaitingApproval", state
        def ours():  # another test's runs may fire it too, while it exists
            return [p for p in receiver.posts("/prefect") if "(prefect-notified)" in p.json["text"]]

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ours():
            time.sleep(0.5)
        assert ours(), f"the automation sent nothing about this run within 60 s: {receiver.posts('/prefect')}"
        text = ours()[0].json["text"]
        assert "AwaitingApproval" in text and "dreams approve drm_" in text, text
    finally:
        automation.delete()


@pytest.mark.flow
@pytest.mark.gx
def test_an_automatic_dream_through_the_flow_notifies_its_outcome_once(prefect_harness, hooked):
    from datetime import timedelta

    from dreaming.stores import StoreService
    from flows.dream import run_dream_to_state
    from tests.factories import T0, write_sessions

    catalog = Catalog()
    StoreService(catalog).create("auto-notified", scope="acme")
    write_sessions(catalog.settings, [
        {"session_id": f"sesn_autohook_{i}", "start": T0 + timedelta(hours=i),
         "events": [("user", "always use uv, never pip"), ("assistant", "done")]} for i in range(3)])
    state = run_dream_to_state(store="auto-notified", approval_timeout_s=0, output_behavior="update_existing")
    assert state.is_completed(), state
    [d] = catalog.list_dreams(store_id=catalog.get_store("auto-notified")["id"])
    event = notifications.event_of(d)
    assert event in ("promoted", "awaiting_approval"), d.promotion
    [p] = hooked.posts()
    assert p.verified() and p.json["event"] == event and p.json["dream"]["id"] == d.id
