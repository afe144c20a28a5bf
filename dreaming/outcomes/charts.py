"""Pictures of the outcomes: Vega-Lite charts built with altair, written as one HTML page.

Per store: the error and correction rates per day with a rule at each promotion, and the most recurring
patterns, covered by a memory or not (a backtest adds its coverage per split). ``vl-convert-python`` is not
installed, so altair cannot save PNG or SVG here: the page embeds the Vega-Lite spec and draws it with
vega-embed in the browser (the scripts load from the jsDelivr CDN, as altair's own HTML does). The same
figures follow as plain HTML tables, so the page reads without the scripts too.
"""

from __future__ import annotations

import html
from pathlib import Path

from dreaming.atomic import write_text_atomic

WIDTH = 560


def rates_chart(report: dict):
    import altair as alt
    import pandas as pd

    rows = [{"day": d["day"], "metric": m.replace("_", " "), "rate": d[m]}
            for d in report["daily"] for m in ("error_rate", "correction_rate") if d[m] is not None]
    rows += [{"day": d["day"], "metric": "success rate", "rate": d["success_rate"]}
             for d in report["daily"] if d["success_rate"] is not None]
    lines = alt.Chart(pd.DataFrame(rows or [{"day": None, "metric": "error rate", "rate": None}])).mark_line(
        point=True).encode(x=alt.X("day:T", title="day"), y=alt.Y("rate:Q", title="share of sessions",
                                                                   scale=alt.Scale(domain=[0, 1])),
                           color=alt.Color("metric:N"), tooltip=["day:T", "metric:N", alt.Tooltip("rate:Q", format=".0%")])
    proms = pd.DataFrame([{"at": p["at"], "promotion": f"v{p['version']}", "changed": p["changed"]}
                          for p in report["promotions"]] or [{"at": None, "promotion": None, "changed": 0}])
    rules = alt.Chart(proms).mark_rule(strokeDash=[4, 3], color="gray").encode(
        x="at:T", tooltip=["promotion:N", "at:T", "changed:Q"])
    labels = alt.Chart(proms).mark_text(align="left", dx=3, dy=-4, color="gray").encode(
        x="at:T", y=alt.value(0), text="promotion:N")
    return (lines + rules + labels).properties(
        width=WIDTH, height=220, title=f"{report['store']['name']}: rates per day, promotions marked")


def patterns_chart(top: list[dict], title: str):
    import altair as alt
    import pandas as pd

    df = pd.DataFrame([{"pattern": t["pattern"][:70], "sessions": t["sessions"],
                        "covered": "covered by a memory" if t["covered"] else "not covered", "kind": t["kind"]}
                       for t in top] or [{"pattern": "(none)", "sessions": 0, "covered": "not covered", "kind": ""}])
    return alt.Chart(df).mark_bar().encode(
        y=alt.Y("pattern:N", sort="-x", title=None), x=alt.X("sessions:Q", title="sessions"),
        color=alt.Color("covered:N", scale=alt.Scale(domain=["covered by a memory", "not covered"],
                                                     range=["#4c9a2a", "#c0392b"])),
        tooltip=["pattern:N", "kind:N", "sessions:Q", "covered:N"]).properties(width=WIDTH, title=title)


def coverage_chart(bt: dict):
    import altair as alt
    import pandas as pd

    rows = [{"split": s["split"], "what": w, "coverage": s[w]["coverage"]}
            for s in bt["splits"] for w in ("failures", "corrections") if s[w]["coverage"] is not None]
    df = pd.DataFrame(rows or [{"split": None, "what": "failures", "coverage": None}])
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("split:T"), y=alt.Y("coverage:Q", scale=alt.Scale(domain=[0, 1]), title="covered share after the split"),
        color="what:N", tooltip=["split:T", "what:N", alt.Tooltip("coverage:Q", format=".0%")]).properties(
        width=WIDTH, height=200, title="backtest: share already covered by a memory")


def _table(rows: list[dict], cols: list[str]) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if r.get(c) is None else str(r.get(c)))}</td>"
                                    for c in cols) + "</tr>" for r in rows)
    return f"<table border=1 cellspacing=0 cellpadding=3><tr>{head}</tr>{body}</table>"


def page(report: dict | None = None, backtest: dict | None = None) -> str:
    """The HTML page: the charts (Vega-Lite, drawn by vega-embed) and the same figures as tables."""
    import altair as alt

    charts, tables = [], []
    name = (report or backtest)["store"]["name"]
    if report is not None:
        charts += [rates_chart(report), patterns_chart(report["top_patterns"], "most recurring patterns")]
        mem = [{**e, "before": _rate(e["before"]), "after": _rate(e["after"])} for e in report["memories"]]
        tables += ["<h2>memories</h2>", _table(mem, ["version", "path", "kind", "before", "after", "verdict", "why"]),
                   "<h2>per day</h2>", _table(report["daily"], list(report["daily"][0]) if report["daily"] else [])]
    if backtest is not None and backtest["splits"]:
        charts.append(coverage_chart(backtest))
        last = backtest["splits"][-1]
        charts.append(patterns_chart(last["top_patterns"], f"after the split {last['split'][:10]}: covered or new"))
        tables += ["<h2>backtest</h2>", _table([{**s, "failures": _cov(s["failures"]), "corrections": _cov(s["corrections"])}
                                                for s in backtest["splits"]],
                                               ["split", "sessions_before", "sessions_after", "memories", "tokens",
                                                "failures", "corrections"])]
    doc = alt.vconcat(*charts).to_html() if charts else "<html><body></body></html>"
    extra = f"<h1>{html.escape(name)}</h1>" + "".join(tables)
    return doc.replace("</body>", extra + "\n</body>", 1)


def _rate(r: dict | None) -> str:
    if not r:
        return "—"
    pct = "—" if r["rate"] is None else f"{100 * r['rate']:.0f}% [{100 * r['low']:.0f}–{100 * r['high']:.0f}]"
    return f"{r['count']}/{r['sessions']} {pct}"


def _cov(c: dict) -> str:
    return f"{c['covered']} covered, {c['new']} new"


def write_page(path: Path, report: dict | None = None, backtest: dict | None = None) -> Path:
    path = Path(path)
    write_text_atomic(page(report, backtest), path, path.parent)
    return path
