"""Which ResNet-50 b64 forward convolutions block the host when the GPU has queued work.
For each conv module: host us of one call (a) with the GPU idle, (b) after ~1 ms of queued GPU work
(torch.cuda._sleep). A call that waits for the queue shows (b) >> (a)."""
import copy, json, sys, time, statistics, collections
import torch, torchvision as tv
import cudnnconv as cc
import cudnnconv.torch as cct
from cudnnconv.torch import bridge
from torch.profiler import profile, ProfilerActivity
torch.backends.cudnn.benchmark = True
torch.manual_seed(0)
base = tv.models.resnet50().to("cuda", torch.float16).to(memory_format=torch.channels_last)
ours = cct.convert(copy.deepcopy(base))
shapes = {}
hooks = [m.register_forward_hook(lambda m, i, o, n=n: [shapes.setdefault(n, tuple(i[0].shape))] and None)
         for n, m in base.named_modules() if isinstance(m, torch.nn.Conv2d)]
x = torch.randn(64, 3, 224, 224, device="cuda", dtype=torch.float16).to(memory_format=torch.channels_last)
base(x); [h.remove() for h in hooks]
om = dict(ours.named_modules()); bm = dict(base.named_modules())
sync = torch.cuda.synchronize
SLEEP = 2_000_000
def host(mod, inp, queued, n=7):
    r = []
    for _ in range(n):
        sync()
        if queued:
            torch.cuda._sleep(SLEEP)
        t0 = time.perf_counter(); y = mod(inp); t1 = time.perf_counter()
        sync(); r.append((t1 - t0) * 1e6); del y
    return statistics.median(r)
sync(); t0 = time.perf_counter(); torch.cuda._sleep(SLEEP); t1 = time.perf_counter(); sync(); t2 = time.perf_counter()
print("sleep queued us %.1f, drained us %.1f" % ((t1 - t0) * 1e6, (t2 - t0) * 1e6))
rows = []; seen = {}
for n, shp in shapes.items():
    key = (shp, bm[n].weight.shape, bm[n].stride, bm[n].padding)
    inp = torch.randn(shp, device="cuda", dtype=torch.float16).to(memory_format=torch.channels_last)
    inp.requires_grad_(n != "conv1")
    for mod in (bm[n], om[n]):
        for _ in range(3):
            mod(inp)
    sync()
    r = dict(name=n, x=list(shp), w=list(bm[n].weight.shape), stride=bm[n].stride,
             torch_idle=host(bm[n], inp, False), torch_q=host(bm[n], inp, True),
             ours_idle=host(om[n], inp, False), ours_q=host(om[n], inp, True))
    with torch.no_grad():
        r["ours_nograd_q"] = host(om[n], inp, True)
    try:
        ch = cc.last_choice(bridge.as_array(inp.detach()), bridge.as_array(om[n].weight.detach()),
                            stride=bm[n].stride, padding=bm[n].padding, benchmark=True)
        r["choice"] = str(ch)[:300]
    except Exception as e:
        r["choice"] = "err %r" % e
    rows.append(r)
    print("%-22s %-18s %-16s torch %.0f/%.0f ours %.0f/%.0f nograd_q %.0f | %s" % (
        n, shp, tuple(r["w"]), r["torch_idle"], r["torch_q"], r["ours_idle"], r["ours_q"],
        r["ours_nograd_q"], r["choice"][:160]), flush=True)
# profile the worst blocking module
worst = max(rows, key=lambda r: r["ours_q"] - r["ours_idle"])
print("worst", worst["name"])
inp = torch.randn(worst["x"], device="cuda", dtype=torch.float16).to(memory_format=torch.channels_last).requires_grad_(True)
for lab, mod in (("torch", bm[worst["name"]]), ("ours", om[worst["name"]])):
    sync()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        torch.cuda._sleep(SLEEP); y = mod(inp); sync()
    evs = sorted((e for e in prof.events()), key=lambda e: e.time_range.start)
    print("--", lab)
    for e in evs:
        print("   %-8s %-70s start %9.1f dur %8.1f" % (str(e.device_type).split(".")[-1], e.name[:70],
              e.time_range.start - evs[0].time_range.start, e.time_range.elapsed_us()))
json.dump(rows, open(sys.argv[1], "w"), indent=1)
