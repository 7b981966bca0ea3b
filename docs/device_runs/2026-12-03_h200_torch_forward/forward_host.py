"""b64 ResNet-50 training forward, host ms (launch, sync after), ours vs torch; argv[1] == 'torchalloc'
makes CuPy allocate (and so cuDNN's workspace come) from torch's caching allocator. Then one profiled
forward of ours: every cudaMemsetAsync with its duration and the kernel launch after it."""
import copy, sys, time, statistics
import torch, torchvision as tv, cupy
if sys.argv[1] == "torchalloc":
    class _Del:
        def __init__(self, p): self.p = p
        def __del__(self): torch.cuda.caching_allocator_delete(self.p)
    def _alloc(n):
        p = torch.cuda.caching_allocator_alloc(max(n, 1))
        return cupy.cuda.MemoryPointer(cupy.cuda.UnownedMemory(p, n, _Del(p)), 0)
    cupy.cuda.set_allocator(_alloc)
import cudnnconv.torch as cct
from torch.profiler import profile, ProfilerActivity
torch.backends.cudnn.benchmark = True
torch.manual_seed(0)
base = tv.models.resnet50().to("cuda", torch.float16).to(memory_format=torch.channels_last)
models = {"torch": base, "ours": cct.convert(copy.deepcopy(base))}
x = torch.randn(64, 3, 224, 224, device="cuda", dtype=torch.float16).to(memory_format=torch.channels_last)
t = torch.randint(0, 1000, (64,), device="cuda")
for k, m in models.items():
    for _ in range(5):
        m.zero_grad(set_to_none=True); torch.nn.functional.cross_entropy(m(x), t).backward()
    torch.cuda.synchronize()
    fw = []
    for _ in range(15):
        m.zero_grad(set_to_none=True)
        t0 = time.perf_counter(); loss = torch.nn.functional.cross_entropy(m(x), t); t1 = time.perf_counter()
        torch.cuda.synchronize(); fw.append((t1 - t0) * 1e3); loss.backward(); torch.cuda.synchronize()
    print(sys.argv[1], k, "fwd host ms median %.3f min %.3f" % (statistics.median(fw), min(fw)), flush=True)
m = models["ours"]
m.zero_grad(set_to_none=True)
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    loss = torch.nn.functional.cross_entropy(m(x), t); torch.cuda.synchronize()
evs = sorted((e for e in prof.events() if e.device_type != torch.autograd.DeviceType.CUDA), key=lambda e: e.time_range.start)
t0 = evs[0].time_range.start
for i, e in enumerate(evs):
    if e.name == "cudaMemsetAsync":
        nxt = [f.name for f in evs[i + 1:i + 4]]
        prv = [f.name for f in evs[max(0, i - 3):i]]
        print("memset at %.0f dur %.1f prev %s next %s" % (e.time_range.start - t0, e.time_range.elapsed_us(), prv, nxt))
