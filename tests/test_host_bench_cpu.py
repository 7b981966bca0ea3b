"""CPU tests of bench/host.py (host time per call against PyTorch): the ResNet-50 conv table, the records
and their ratio and geomean math, the summary, the markdown, the timing loops on fake calls, and a run
without PyTorch that still writes its outputs.  No GPU, PyTorch, CuPy or built extension needed."""
import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench import host  # noqa: E402

REQUIRED = ("per_call_ratio_geomean", "per_call_ratio_max", "out_ratio_geomean", "plan_ratio_geomean",
            "step_ratio_b32", "step_ratio_b128", "outside_execute_us_median")


def test_module_imports_without_gpu_packages():
    code = ("import sys\nfor m in ('torch', 'torchvision', 'cupy', 'cudnnconv', 'matplotlib'):\n"
            "    sys.modules[m] = None\nimport bench.host\nprint('ok')")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ---------------------------------------------------------------------------
# the ResNet-50 conv table
# ---------------------------------------------------------------------------

def test_resnet50_table_is_torchvisions_53_convs_in_hook_order():
    convs = host.resnet50_convs()
    names = [c["name"] for c in convs]
    assert len(convs) == 53 and len(set(names)) == 53
    assert convs[0] == {"name": "conv1", "x": (1, 3, 224, 224), "w": (64, 3, 7, 7), "stride": (2, 2),
                        "padding": (3, 3)}
    assert names[1:6] == ["layer1.0.conv1", "layer1.0.conv2", "layer1.0.conv3", "layer1.0.downsample.0",
                          "layer1.1.conv1"]
    assert convs[-1] == {"name": "layer4.2.conv3", "x": (1, 512, 7, 7), "w": (2048, 512, 1, 1), "stride": (1, 1),
                         "padding": (0, 0)}
    assert [n for n in names if n.endswith("downsample.0")] == ["layer%d.0.downsample.0" % i for i in (1, 2, 3, 4)]
    assert [c["name"] for c in convs if c["stride"] != (1, 1)] == [
        "conv1", "layer2.0.conv2", "layer2.0.downsample.0", "layer3.0.conv2", "layer3.0.downsample.0",
        "layer4.0.conv2", "layer4.0.downsample.0"]
    for c in convs:
        assert c["w"][1] == c["x"][1] and c["padding"] == ((c["w"][2] - 1) // 2,) * 2


def test_resnet50_table_chains_block_by_block():
    by = {c["name"]: c for c in host.resnet50_convs()}
    out = lambda c: host.out_shape(c["x"], c["w"], c["stride"], c["padding"])  # noqa: E731
    assert out(by["conv1"]) == (1, 64, 112, 112)
    for stage, blocks in ((1, 3), (2, 4), (3, 6), (4, 3)):
        for b in range(blocks):
            pre = "layer%d.%d." % (stage, b)
            assert out(by[pre + "conv1"]) == by[pre + "conv2"]["x"]
            assert out(by[pre + "conv2"]) == by[pre + "conv3"]["x"]
            if b == 0:
                assert out(by[pre + "downsample.0"]) == out(by[pre + "conv3"])
            nxt = "layer%d.%d.conv1" % (stage, b + 1) if b + 1 < blocks else "layer%d.0.conv1" % (stage + 1)
            if nxt in by:
                assert by[nxt]["x"] == out(by[pre + "conv3"])
    assert out(by["layer4.2.conv3"]) == (1, 2048, 7, 7)


def test_resnet50_table_has_the_23_distinct_layers_of_warm_cache():
    from bench import warm_cache
    distinct = {(c["x"], c["w"], c["stride"][0], c["padding"][0]) for c in host.resnet50_convs()}
    assert distinct == {(x, w, s, p) for _, x, w, s, p in warm_cache.resnet50_layers(1)}


def test_out_shape_and_tiny_labels():
    assert host.out_shape((32, 64, 56, 56), (128, 64, 3, 3), (2, 2), (1, 1)) == (32, 128, 28, 28)
    assert host.out_shape((8, 3, 224, 224), (64, 3, 7, 7), (2, 2), (3, 3)) == (8, 64, 112, 112)
    assert [host.tiny_label(s) for s in host.TINY_SHAPES] == [
        "N=64 C=256 H=14 K=256 3x3 pad1", "N=1 C=8 H=8 K=8 3x3 pad1", "N=64 C=64 H=56 K=64 1x1 pad0"]


def test_conv_table_falls_back_to_the_built_in_table_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    convs, source, note = host.conv_table()
    assert convs == host.resnet50_convs() and source == "table" and "torchvision hooks failed" in note


# ---------------------------------------------------------------------------
# records, ratios, summary
# ---------------------------------------------------------------------------

def test_ratio_median_and_records():
    assert host.ratio(2.0, 4.0) == 0.5
    assert host.ratio(None, 1.0) is None and host.ratio(1.0, None) is None and host.ratio(1.0, 0.0) is None
    assert host.median([3.0, None, 1.0, 2.0]) == 2.0 and host.median([None]) is None
    r = host.call_record(4, "layer1.0.conv1", 32, "bwd", 60.0, 40.0, parts={"dgrad": 25.0, "wgrad": 35.0})
    assert r["ratio"] == 1.5 and r["ours_parts_us"] == {"dgrad": 25.0, "wgrad": 35.0} and "error" not in r
    e = host.call_record(0, "conv1", 32, "fwd", None, 30.0, error="fwd: CuDNNError: boom")
    assert e["ratio"] is None and e["error"] == "fwd: CuDNNError: boom"
    s = host.step_record(128, 159, [10.0, 12.0, 11.0], [10.0, 10.0, 10.0], [3.0, 5.0, 4.0], [2.0, 2.0, 2.0])
    assert (s["ours_ms"], s["torch_ms"], s["ratio"], s["host_ratio"], s["steps"]) == (11.0, 10.0, 1.1, 2.0, 3)
    t = host.tiny_record((1, 8, 8, 8, 3, 1), {"plain": 30.0, "out": 24.0, "plan": 15.0, "torch": 20.0},
                         {"plan_out": "TypeError: out"})
    assert (t["plain_ratio"], t["out_ratio"], t["plan_ratio"]) == (1.5, 1.2, 0.75)
    assert t["plan_out_us"] is None and t["plan_out_ratio"] is None and t["error"] == "plan_out: TypeError: out"


def test_outside_execute_and_stage_summary():
    assert host.outside_execute({"total": 30.0, "execute": 18.0, "host": 40.0}) == 12.0   # total first
    assert host.outside_execute({"key": 1.0, "execute": 18.0, "host": 25.0}) == 7.0       # graph trace: no total
    assert host.outside_execute({"total": 30.0}) is None and host.outside_execute({"execute": 3.0}) is None
    groups = {"tiny": [{"total": 20.0, "execute": 10.0}, {"total": 22.0, "execute": 10.0}],
              "resnet50 b32 fwd": [{"total": 40.0, "execute": 30.0, "lookup": 2.0}], "empty": []}
    s = host.stage_summary("cudnnconv.trace_stages", groups)
    assert s["method"] == "cudnnconv.trace_stages" and s["samples"] == 3 and set(s["groups"]) == {
        "tiny", "resnet50 b32 fwd"}
    assert s["groups"]["tiny"] == {"execute": 10.0, "total": 21.0, "outside_execute": 11.0}
    assert s["medians_us"]["lookup"] == 2.0 and s["medians_us"]["execute"] == 10.0
    assert s["outside_execute_us_median"] == 10.0                  # median of 10, 12, 10 over all calls
    assert host.stage_summary("graph.trace_stages", {})["outside_execute_us_median"] is None


def _synthetic():
    calls = []
    for i, (fr, br) in enumerate(((0.5, 2.0), (1.0, None))):
        calls.append(host.call_record(i, "l%d" % i, 32, "fwd", 20.0 * fr, 20.0))
        calls.append(host.call_record(i, "l%d" % i, 32, "bwd", None if br is None else 50.0 * br, 50.0,
                                      error="" if br else "dgrad: RuntimeError: x"))
    return {"environment": {"gpu": "NVIDIA H200", "cudnn": "9.19.0", "torch": "2.11", "date": "2026-01-01"},
            "config": {"repeats": 15, "per_call_batch": 32}, "per_call": calls,
            "step": [host.step_record(32, 159, [4.0], [5.0], [2.0], [1.0]),
                     host.step_record(64, 159, [9.0], [9.0], [3.0], [1.5])],
            "tiny": [host.tiny_record(s, {"plain": 40.0, "out": 20.0, "plan": 10.0, "plan_out": 8.0, "torch": 20.0})
                     for s in host.TINY_SHAPES[:2]] + [host.tiny_record(host.TINY_SHAPES[2], {}, {"setup": "E: x"})],
            "stages": host.stage_summary("graph.trace_stages", {"t": [{"host": 30.0, "execute": 12.0}]}),
            "notes": ["cudnnconv.plan is missing: no plan rows"]}


def test_summary_has_the_required_names_and_the_geomean_math():
    res = _synthetic()
    s = host.summarize(res)
    assert all(k in s for k in REQUIRED)
    assert s["per_call_ratio_geomean"] == pytest.approx((0.5 * 2.0 * 1.0) ** (1 / 3))
    assert s["per_call_ratio_max"] == 2.0 and s["per_call_worst"] == {"layer": "l0", "direction": "bwd",
                                                                        "ratio": 2.0}
    assert s["per_call_ratio_geomean_fwd"] == pytest.approx(math.sqrt(0.5)) and s["per_call_ratio_geomean_bwd"] == 2
    assert s["per_call_sum_us"] == {"ours": 10.0 + 100.0 + 20.0, "torch": 20.0 + 50.0 + 20.0}
    assert (s["out_ratio_geomean"], s["plan_ratio_geomean"], s["plain_ratio_geomean_tiny"]) == (1.0, 0.5, 2.0)
    assert s["plan_out_ratio_geomean"] == pytest.approx(0.4)
    assert s["step_ratio_b32"] == 0.8 and s["step_ratio_b128"] is None and s["step_ratio_b64"] == 1.0
    assert s["step_ms"]["b32"] == {"ours_ms": 4.0, "torch_ms": 5.0, "ours_host_ms": 2.0, "torch_host_ms": 1.0}
    assert s["outside_execute_us_median"] == 18.0
    assert s["cudnn_floor_ratio_geomean_tiny"] is None           # no tiny shape's stages in this run


def test_the_cudnn_floor_is_execute_plus_a_variant_pack_over_torch():
    res = _synthetic()
    labels = [t["shape"] for t in res["tiny"]]
    res["stages"] = host.stage_summary("cudnnconv.trace_stages", {
        labels[0]: [{"execute": 9.0, "variant_pack": 1.0, "total": 14.0}],
        labels[1]: [{"execute": 4.0, "variant_pack": 1.0, "total": 8.0}]})
    s = host.summarize(res)
    assert s["cudnn_floor_ratio_geomean_tiny"] == pytest.approx(math.sqrt((10.0 / 20.0) * (5.0 / 20.0)))


def test_the_plan_floor_is_execute_pack_and_output_over_torch_and_is_reported():
    samples = [{"signature": 0.1, "output": 1.0, "handle": 0.2, "variant_pack": 0.8, "execute": 6.0, "return": 0.1,
                "total": 8.2},
               {"signature": 0.3, "output": 1.2, "handle": 0.2, "variant_pack": 1.0, "execute": 8.0, "return": 0.1,
                "total": 10.8},
               {"signature": 0.2, "output": 0.8, "handle": 0.2, "variant_pack": 0.6, "execute": 7.0, "return": 0.1,
                "total": 8.9}]
    got = host.plan_floor(samples, 20.0)
    assert got["plan_stages_us"]["execute"] == 7.0 and got["plan_stages_us"]["total"] == 8.9
    assert got["plan_floor_us"] == pytest.approx(7.0 + 0.8 + 1.0)
    assert got["plan_floor_ratio"] == pytest.approx(8.8 / 20.0)
    assert host.plan_floor([{"execute": 5.0}], 10.0)["plan_floor_us"] is None      # a stage missing: no floor
    res = _synthetic()
    res["tiny"][0].update(got, variant_pack_build_us=0.55)
    res["tiny"][1].update(host.plan_floor(samples[:1], 13.6))
    res["summary"] = s = host.summarize(res)
    assert s["plan_floor_ratio_geomean_tiny"] == pytest.approx(math.sqrt((8.8 / 20.0) * (7.8 / 13.6)))
    md = host.render_markdown(res)
    assert "## Where a plan call's time goes" in md
    assert "| N=64 C=256 H=14 K=256 3x3 pad1 | 0.20 | 1.00 | 0.20 | 0.80 | 7.00 | 0.10 | 8.90 | 0.55 | 8.80 | 20.00 | 0.44 |" in md


def test_summary_of_an_empty_run_is_all_none():
    s = host.summarize({"per_call": [], "step": [], "tiny": [], "stages": {}})
    assert all(s[k] is None for k in REQUIRED) and s["per_call_sum_us"] == {"ours": 0, "torch": 0}


def test_markdown_and_terminal_table():
    res = _synthetic()
    res["summary"] = host.summarize(res)
    md = host.render_markdown(res)
    for section in ("## Summary", "## Training step", "## Per call, batch 32", "## Tiny shapes", "## Stages",
                    "## Notes"):
        assert section in md
    assert "| per_call_ratio_max | 2.000 |" in md and "| step_ratio_b128 | - |" in md
    assert "| outside_execute_us_median | 18.0 |" in md
    assert "| 32 | 4.000 | 5.000 | 0.800 | 2.000 | 1.000 |  |" in md
    assert "| 0 | l0 | fwd | 10.0 | 20.0 | 0.50 | - | - |  |" in md
    assert "| 1 | l1 | bwd | - | 50.0 | - | - | - | dgrad: RuntimeError: x |" in md
    assert "| N=1 C=8 H=8 K=8 3x3 pad1 | 40.0 | 20.0 | 10.0 | 8.0 | 20.0 | 2.00 | 1.00 | 0.50 |  |" in md
    assert "| N=64 C=64 H=56 K=64 1x1 pad0 | - | - | - | - | - | - | - | - | setup: E: x |" in md
    assert "trace: graph.trace_stages" in md and "| execute | 12.0 | 12.0 |" in md
    assert "- cudnnconv.plan is missing: no plan rows" in md
    text = host.text_table(res)
    assert "per_call_ratio_geomean" in text and "step b32" in text and "N=64 C=256 H=14 K=256 3x3 pad1" in text


def test_chart_without_matplotlib_is_skipped(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert host.chart(_synthetic(), str(tmp_path / "x.png")) is None


def test_chart_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    path = str(tmp_path / "x.png")
    assert host.chart(_synthetic(), path) == path and os.path.getsize(path) > 0


# ---------------------------------------------------------------------------
# timing loops on fake calls, the options, and a run without PyTorch
# ---------------------------------------------------------------------------

def test_host_samples_times_the_call_only_and_syncs_after_it():
    log = []
    got = host.host_samples(lambda a: log.append(("call", a)), 3, lambda: log.append("sync"),
                            prep=lambda i: log.append(("prep", i)) or i * 10, after=lambda i: log.append(("after", i)),
                            warmup=1)
    assert len(got) == 3 and all(t >= 0 for t in got)
    assert log[:6] == [("prep", -1), "sync", ("call", -10), "sync", ("after", -1), ("prep", 0)]
    assert log.count("sync") == 8 and ("call", 20) in log


def test_stage_samples_trace_on_then_off_and_add_the_host_time():
    state, stamps = [], iter([{"execute": 5.0}, {}, {"execute": 6.0, "total": 9.0}])
    api = ("fake", state.append, lambda: next(stamps))
    got = host.stage_samples(lambda i: i, 3, lambda: None, api)
    assert state == [True, False] and len(got) == 2          # a call with no trace ({}) is dropped
    assert got[1]["total"] == 9.0 and all("host" in s for s in got)


def test_options_and_settings():
    p = host.build_parser()
    a = p.parse_args(["--out", "d"])
    assert a.batches == [32, 128] and a.repeats == 15 and not a.quick and a.time_limit is None
    assert p.parse_args(["--out", "d", "--batches", "8, 16", "--time-limit", "60"]).batches == [8, 16]
    s = host.settings(a)
    assert s["repeats"] >= 15 and s["steps"] >= 10 and s["tiny_calls"] >= 100
    q = host.settings(p.parse_args(["--out", "d", "--quick"]))
    assert q["repeats"] <= 5 and q["steps"] < s["steps"]
    with pytest.raises(SystemExit):
        p.parse_args([])


def test_a_run_without_torch_still_writes_its_outputs(monkeypatch, tmp_path, capsys):
    for m in ("torch", "cupy", "cudnnconv"):
        monkeypatch.setitem(sys.modules, m, None)
    res = host.main(["--out", str(tmp_path), "--quick"])
    assert res["notes"][0].startswith("run stopped: ") and "cupy" in res["notes"][0]
    with open(tmp_path / "gpu_host.json") as f:
        saved = json.load(f)
    assert saved["schema"] == host.SCHEMA and all(saved["summary"][k] is None for k in REQUIRED)
    assert saved["config"]["batches"] == [32, 128] and saved["config"]["quick"] is True
    assert (tmp_path / "gpu_host.md").read_text().startswith("# cudnnconv host time per call vs PyTorch")
    assert "per_call_ratio_geomean" in capsys.readouterr().out


def test_node_shares_and_share_out():
    shares = host.node_shares([[10.0, 30.0, 20.0], [5.0, 5.0], [15.0]])     # medians 20, 5, 15
    assert shares == pytest.approx([0.5, 0.125, 0.375])
    assert host.node_shares([[10.0], []]) is None and host.node_shares([[10.0], [0.0]]) is None
    assert host.node_shares([]) is None
    # the whole backward (average x convs) is shared out; the total is kept
    per = host.share_out(40.0, shares, 3)
    assert per == pytest.approx([60.0, 15.0, 45.0]) and sum(per) == pytest.approx(120.0)
    assert host.share_out(40.0, None, 3) == [40.0] * 3 and host.share_out(None, shares, 3) == [None] * 3


def test_summary_against_the_average_as_well():
    res = _synthetic()
    bwd = res["per_call"][1]                     # ours 100 against a profiled share of 50: ratio 2
    bwd.update(torch_basis="profiled share", torch_avg_us=125.0, ratio_vs_avg=0.8)
    s = host.summarize(res)
    assert s["per_call_ratio_max"] == 2.0
    assert s["per_call_ratio_max_vs_avg"] == 1.0                   # l1 fwd: 1.0; l0 bwd: 0.8 against the average
    assert s["per_call_ratio_geomean_vs_avg"] == pytest.approx((0.5 * 0.8 * 1.0) ** (1 / 3))
    res["summary"] = s
    assert "| 0 | l0 | bwd | 100.0 | 50.0 | 2.00 | 125.0 | 0.80 |  |" in host.render_markdown(res)


def test_per_call_figures_pool_passes_so_a_slow_spell_drops_out(monkeypatch):
    """measure_per_call with stand-ins for torch and cudnnconv (no GPU): every function's samples come
    from five passes over the convs; one slow pass (10x) must not move any median.  Without PyTorch's
    profiler the bwd figures fall back to the average, with a note."""
    from types import SimpleNamespace as NS
    calls = {}

    def fake_samples(call, n, sync, prep=None, after=None, warmup=2):
        key = call.__code__ if prep else id(call)          # a pass is the k-th call of each function
        k = calls[key] = calls.get(key, -1) + 1
        if prep:                                            # PyTorch's backward over all convs
            prep(0), after(0)
        return [(1000.0 if k == 1 else 100.0) if prep else (50.0 if k == 1 else 5.0)] * n
    monkeypatch.setattr(host, "host_samples", fake_samples)
    monkeypatch.setitem(sys.modules, "torch.profiler", None)
    torch = NS(nn=NS(functional=NS(conv2d=lambda *a: NS())), cuda=NS(synchronize=lambda: None),
               autograd=NS(backward=lambda ys, gs: None))
    cc = NS(conv=lambda *a, **k: None, conv_backward_input=lambda *a, **k: None,
            conv_backward_weight=lambda *a, **k: None)
    layers = [NS(name="l%d" % i, s=1, p=0, xshape=(1, 1, 4, 4), wshape=(1, 1, 1, 1), g=[NS()], xr=[NS()],
                 wr=NS(), xc=[None], gc=[None], wc=None) for i in range(3)]
    notes = []
    recs = host.measure_per_call(torch, cc, layers, 32, 4, 1, float("inf"), notes)
    assert [(r["layer"], r["direction"]) for r in recs] == [("l%d" % i, d) for i in range(3) for d in ("fwd", "bwd")]
    for r in recs:
        if r["direction"] == "fwd":
            assert (r["ours_us"], r["torch_us"]) == (5.0, 5.0)
        else:
            assert r["ours_us"] == 10.0 and r["ours_parts_us"] == {"dgrad": 5.0, "wgrad": 5.0}
            assert r["torch_us"] == pytest.approx(100.0 / 3) and r["torch_basis"] == "average"
    assert any("shares could not be profiled" in n for n in notes)
