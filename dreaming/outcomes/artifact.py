"""The outcomes as a Prefect artifact: where people look (the flow run's Artifacts tab) rather than read.

``publish(report)`` writes a markdown artifact ``outcomes-<store>`` when called inside a flow or task run
(and does nothing outside one): the charts of ``--html`` (SVG as ``data:`` images, which Prefect's UI draws:
tests/e2e/test_ui.py), the rates per day with a sparkline each, the promotions, and each promoted memory's
before → after and verdict. ``record(store)`` computes the report and publishes it: what a nightly
flow calls after its dream.
"""

from __future__ import annotations

from dreaming.outcomes import stats

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float | None]) -> str:
    """One bar per value on a 0–1 scale (a blank for a day without a value)."""
    return "".join(" " if v is None else _BARS[min(len(_BARS) - 1, int(v * len(_BARS)))] for v in values)


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def _rate(r: dict | None) -> str:
    if not r or r["rate"] is None:
        return "—"
    return f"{r['count']}/{r['sessions']} ({_pct(r['low'])}–{_pct(r['high'])})"


def _cell(text) -> str:
    return str(text if text is not None else "—").replace("|", "\\|").replace("\n", " ")


def markdown(rep: dict, charts: bool = True) -> str:
    s, days = rep["store"], rep["daily"]
    out = [f"# Outcomes of `{s['name']}` ({s['scope']}), head v{s['head_version']}", "",
           f"{rep['sessions']} sessions" + (f" since {rep['since']}" if rep["since"] else "") +
           f"; verdicts: " + (", ".join(f"{k} {rep['verdicts'].get(k, 0)}" for k in stats.VERDICTS)), ""]
    if days:
        out += [f"error rate `{sparkline([d['error_rate'] for d in days])}` · correction rate "
                f"`{sparkline([d['correction_rate'] for d in days])}` · success "
                f"`{sparkline([d['success_rate'] for d in days])}` ({days[0]['day']} → {days[-1]['day']})", ""]
    if charts:  # drawn by Prefect's UI: a markdown image of each SVG chart (dreaming.outcomes.charts)
        from dreaming.outcomes.charts import data_uri, store_charts

        out += [f"![{title}]({data_uri(svg)})" for svg, title in store_charts(rep)] + [""]
    if rep["promotions"]:
        out += ["promotions: " + ", ".join(f"v{p['version']} at {p['at']}" for p in rep["promotions"]), ""]
    out += ["| version | memory | before | after | verdict | why |", "|---|---|---|---|---|---|"]
    out += [f"| v{e['version']} | `{_cell(e['path'])}` | {_rate(e['before'])} | {_rate(e['after'])} | "
            f"{_cell(e['verdict'])} | {_cell(e['why'])} |" for e in rep["memories"]]
    out += ["", "| day | sessions | error rate | correction rate | success | tool calls / session |",
            "|---|---|---|---|---|---|"]
    out += [f"| {d['day']} | {d['sessions']} | {_pct(d['error_rate'])} | {_pct(d['correction_rate'])} | "
            f"{_pct(d['success_rate'])} | {d['tool_calls_per_session']} |" for d in days]
    out += ["", "| sessions | most recurring pattern | covered by |", "|---|---|---|"]
    out += [f"| {t['sessions']} | {_cell(t['pattern'])} | {_cell(t['memory'])} |" for t in rep["top_patterns"]]
    return "\n".join(out) + "\n"


def artifact_key(store_name: str) -> str:
    return "outcomes-" + ("".join(ch if ch.isalnum() else "-" for ch in store_name.lower()).strip("-") or "store")


def publish(rep: dict) -> str | None:
    """The markdown artifact of ``rep`` in the current flow/task run; its id, or None outside a run."""
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return None
    from prefect.artifacts import create_markdown_artifact

    art = create_markdown_artifact(key=artifact_key(rep["store"]["name"]), markdown=markdown(rep),
                                   description=f"Outcomes of store {rep['store']['name']}: before and after "
                                               "each promotion",
                                   _sync=True)  # also from a sync task of the async dream flow
    return str(art)


def record(store_ref: str, **kw) -> dict:
    """Compute the outcomes of ``store_ref`` and publish them (inside a run); returns the report."""
    from dreaming.outcomes.tracking import outcomes

    rep = outcomes(store_ref, **kw)
    publish(rep)
    return rep
