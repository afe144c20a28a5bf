import pyarrow.parquet as pq
import pytest

from dreaming.errors import BadInput, InvalidState, NotFound
from dreaming.models import Memory
from dreaming.stores import Scope, StoreService
from tests.pg import backend_lake, lake_both  # noqa: F401 - fixtures

lake = lake_both  # every test here runs on SQLite and on PostgreSQL (tests/pg.py)


def test_create_from_dir_and_export_round_trip(catalog, tmp_path):
    src = tmp_path / "mem"
    (src / "preferences").mkdir(parents=True)
    (src / "preferences" / "tabs.md").write_text("Use 4 spaces, never tabs.\n")
    (src / "notes.txt").write_text("The staging DB is read-only on Fridays.")
    (src / ".hidden.md").write_text("ignored")
    (src / "image.png").write_bytes(b"\x89PNG")
    svc = StoreService(catalog)
    store = svc.create_from_dir("team", src, scope="acme/support")
    mems = {m.path: m for m in svc.read_version(store["id"])}
    assert set(mems) == {"/preferences/tabs.md", "/notes.txt"}
    assert mems["/preferences/tabs.md"].kind == "preference"
    out = tmp_path / "out"
    svc.export("team", out)
    assert (out / "preferences" / "tabs.md").read_text() == "Use 4 spaces, never tabs.\n"
    assert (out / "notes.txt").read_text() == "The staging DB is read-only on Fridays."


def test_versions_are_immutable_files_and_head_moves_only_by_cas(catalog):
    svc = StoreService(catalog)
    store = svc.create("s", memories=[Memory(path="/a.md", content="one")])
    v1 = catalog.get_version(store["id"], 1)
    before = (catalog.settings.home / v1["path"]).read_bytes()
    v2 = svc.write_version(store["id"], [Memory(path="/a.md", content="two")], 1, {"type": "user"}, "edit")
    assert v2 == 2
    assert catalog.get_store(store["id"])["head_version"] == 1  # writing a version does not promote it
    assert (catalog.settings.home / v1["path"]).read_bytes() == before
    assert [m.content for m in svc.read_version(store["id"], 2)] == ["two"]
    t = pq.read_table(catalog.settings.home / catalog.get_version(store["id"], 2)["path"])
    assert t.num_rows == 1


def test_bad_store_inputs(catalog, tmp_path):
    svc = StoreService(catalog)
    with pytest.raises(BadInput, match="scope"):
        svc.create("x", scope="not a scope!")
    svc.create("dup")
    with pytest.raises(InvalidState, match="already exists"):
        svc.create("dup")
    with pytest.raises(NotFound):
        catalog.get_store("nope")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(BadInput, match=r"latin1\.md.*UTF-8"):
        svc.create_from_dir("bad", bad)
    assert [s["name"] for s in catalog.list_stores()] == ["dup"]  # nothing half-created


def test_duplicate_paths_rejected(catalog):
    svc = StoreService(catalog)
    with pytest.raises(InvalidState, match="share the path"):
        svc.create("x", memories=[Memory(path="/a", content="1"), Memory(path="/a", content="2")])


@pytest.mark.parametrize("path", ["a.md", "/a//b", "/a/../b", "/a/\u200bb", "/" + "x" * 1100])
def test_memory_path_rules(path):
    with pytest.raises(ValueError):
        Memory(path=path, content="c")


def test_scope_parse():
    assert Scope.parse("acme/support") == Scope("acme", "support")
    assert Scope.parse("acme/*") == Scope("acme", None)
    assert str(Scope.parse("acme")) == "acme"
