"""The pipeline editor in a real browser: a four-node pipeline built by drag-and-drop (palette to
canvas, output port to input port), validated, saved, run, its nodes turning green as the server
reports them; a type mismatch refused; re-run from a node; the demo's pipeline drawn from its run."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

NODES = (("load_dataset", 100, 60), ("split", 300, 60), ("bin_woe", 500, 40), ("train_model", 500, 230))
WIRES = (("data", "load_dataset", "data", "split"), ("train", "split", "train", "bin_woe"),
         ("train", "split", "train", "train_model"), ("binner", "bin_woe", "binner", "train_model"))


def _port(page, side: str, port: str, node: str, kind: str):
    if side == "out":
        return page.get_by_role("button", name=f"output {port} of {node} ({kind}): connect from here")
    return page.get_by_role("button", name=f"input {port} of {node} ({kind}): connect here")


def _set(page, node: str, values: dict[str, str]) -> None:
    page.locator(f".pnode[data-node={node}] header").click()
    for label, value in values.items():
        control = page.locator(".inspector").get_by_label(label)
        if control.evaluate("e => e.tagName") == "SELECT":
            control.select_option(value)
        else:
            control.fill(value)
            control.press("Tab")


def test_build_a_pipeline_by_drag_and_drop_and_run_it(ui):
    ui.sign_in("mo")
    page = ui.go("/pipelines/new")
    canvas = page.locator(".canvas")
    for component, x, y in NODES:
        page.get_by_role("button", name=f"Add component {component}").drag_to(canvas, target_position={"x": x, "y": y})
    assert page.locator(".pnode").count() == 4
    kinds = {"data": "table", "train": "table", "binner": "binner"}
    for out, src, inp, dst in WIRES:
        _port(page, "out", out, src, kinds[out]).drag_to(_port(page, "in", inp, dst, kinds[inp]))
    expect(page.locator("svg.wires path:not(.pending)")).to_have_count(4)  # wires are drawn on the next frame
    # a table cannot feed a binner input: refused with the types named, nothing connected
    _port(page, "out", "test", "split", "table").drag_to(_port(page, "in", "binner", "train_model", "binner"))
    page.get_by_text("split.test gives a table, but train_model.binner takes a binner.").wait_for()
    expect(page.locator("svg.wires path:not(.pending)")).to_have_count(4)  # wires are drawn on the next frame
    _set(page, "load_dataset", {"dataset * (str)": "german_credit"})
    _set(page, "split", {"target * (str)": "creditability"})
    _set(page, "bin_woe", {"target * (str)": "creditability", "bad_value (any)": "bad"})
    _set(page, "train_model", {"target * (str)": "creditability", "bad_value (any)": "bad", "algorithm (str)": "lr"})
    page.get_by_role("textbox", name="Name").fill("four_nodes")
    page.get_by_role("button", name="Validate").click()
    page.get_by_text("The pipeline is valid.").wait_for()
    ui.shot("pipeline-editor")
    page.get_by_role("button", name="Run").click()
    page.locator(".canvas[data-run=succeeded]").wait_for(timeout=120_000)
    statuses = page.locator(".pnode").evaluate_all("els => els.map(e => e.dataset.status)")
    assert sorted(statuses) and all(s in ("succeeded", "cached") for s in statuses) and len(statuses) == 4
    green = page.locator(".pnode.status-succeeded, .pnode.status-cached")
    assert green.count() == 4
    ui.shot("pipeline-run-green")
    saved = page.evaluate("fetch('/api/v1/pipelines/four_nodes').then(r => r.json())")
    doc = saved["document"]
    assert sorted(n["component"] for n in doc["nodes"]) == ["bin_woe", "load_dataset", "split", "train_model"]
    def ref(end):
        return end if isinstance(end, str) else f"{end['node']}.{end.get('output') or end.get('input')}"

    edges = sorted((ref(e["from"]), ref(e["to"])) for e in doc["edges"])
    assert edges == sorted([("load_dataset.data", "split.data"), ("split.train", "bin_woe.train"),
                            ("split.train", "train_model.train"), ("bin_woe.binner", "train_model.binner")])
    assert all("position" in n for n in doc["nodes"])
    # the last node's log is shown when it is selected
    page.locator(".pnode[data-node=train_model] header").click()
    assert page.locator(".inspector pre.logs").count() == 1
    # re-run from a node: what comes before it is reused
    page.get_by_role("button", name="Re-run from here").click()
    page.locator(".canvas[data-run=succeeded]").wait_for(timeout=120_000)
    runs = page.evaluate("fetch('/api/v1/pipelines/runs?pipeline=four_nodes').then(r => r.json())")
    assert len(runs) == 2
    again = {n["node_id"]: n["status"] for n in runs[0]["nodes"]}
    assert again["train_model"] == "succeeded" and again["load_dataset"] != "succeeded"  # the rest reused
    assert ui.errors == []


def test_the_demo_pipeline_is_drawn_from_its_run(ui):
    ui.sign_in("vic")
    page = ui.go("/pipelines")
    ui.follow(page.get_by_role("link", name="credit_scorecard").first)
    assert page.locator(".pnode").count() >= 8
    assert page.locator(".pnode.status-succeeded, .pnode.status-cached").count() == page.locator(".pnode").count()
    assert page.get_by_role("button", name="Run").count() == 0  # a viewer may not run it
    ui.shot("pipeline-demo")
    assert ui.errors == []
