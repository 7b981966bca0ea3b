"""Forward phase of a b64 ResNet-50 training step, ours vs torch: GPU kernels and CUDA runtime
calls in the forward alone (the backward runs outside the profiler), by torch.profiler."""
import copy, json, sys, collections, time
import torch, torchvision as tv
import cudnnconv.torch as cct
from torch.profiler import profile, ProfilerActivity
torch.backends.cudnn.benchmark = True
torch.manual_seed(0)
base = tv.models.resnet50().to("cuda", torch.float16).to(memory_format=torch.channels_last)
models = {"torch": base, "ours": cct.convert(copy.deepcopy(base))}
x = torch.randn(64, 3, 224, 224, device="cuda", dtype=torch.float16).to(memory_format=torch.channels_last)
t = torch.randint(0, 1000, (64,), device="cuda")
out = {}
CUDA = torch.autograd.DeviceType.CUDA
for k, m in models.items():
    for _ in range(5):
        m.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(m(x), t).backward()
    torch.cuda.synchronize()
    # host time of the forward alone, sync after
    fw = []
    for _ in range(10):
        m.zero_grad(set_to_none=True)
        t0 = time.perf_counter(); loss = torch.nn.functional.cross_entropy(m(x), t); t1 = time.perf_counter()
        torch.cuda.synchronize(); t2 = time.perf_counter()
        fw.append(((t1 - t0) * 1e3, (t2 - t0) * 1e3))
        loss.backward(); torch.cuda.synchronize()
    fw.sort(key=lambda a: a[1])
    evs = []
    for _ in range(3):
        m.zero_grad(set_to_none=True)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            loss = torch.nn.functional.cross_entropy(m(x), t)
            torch.cuda.synchronize()
        evs.extend(prof.events())
        loss.backward(); torch.cuda.synchronize()
    kern = [e for e in evs if e.device_type == CUDA]
    kt = collections.Counter(); kc = collections.Counter()
    for e in kern:
        kt[e.name[:90]] += e.device_time_total / 3; kc[e.name[:90]] += 1
    api = collections.Counter(); api_us = collections.Counter()
    ops = collections.Counter(); ops_n = collections.Counter()
    for e in evs:
        if e.device_type == CUDA:
            continue
        if e.name.startswith("cuda"):
            api[e.name] += 1; api_us[e.name] += e.cpu_time_total / 3
        else:
            ops[e.name[:80]] += e.self_cpu_time_total / 3; ops_n[e.name[:80]] += 1
    out[k] = {"fwd_host_ms_launch_and_sync_median": fw[len(fw) // 2],
              "kernels_per_fwd": len(kern) / 3, "kernel_ms_per_fwd": sum(e.device_time_total for e in kern) / 3e3,
              "top_kernels_us": [(n, round(v, 1), kc[n] // 3) for n, v in kt.most_common(25)],
              "runtime_calls_per_fwd": {n: c // 3 for n, c in api.items()},
              "runtime_us_per_fwd": {n: round(v, 1) for n, v in api_us.most_common()},
              "top_cpu_self_us_per_fwd": [(n, round(v, 1), ops_n[n] // 3) for n, v in ops.most_common(30)]}
    print(k, json.dumps(out[k], indent=1), flush=True)
json.dump(out, open(sys.argv[1], "w"), indent=1)
