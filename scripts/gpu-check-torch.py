"""PyTorch's training-step samples/s for gradfleet's two models (same layers, Adam), one JSON line
per model, on CUDA where there is a GPU, else the CPU. Used by scripts/gpu-check.sh side by side
with `gradfleet bench compute`. Usage: gpu-check-torch.py MICRO_BATCH"""
import json, sys, time
import torch
from torch import nn

def conv_bn(ci, co):
    return [nn.Conv2d(ci, co, 3, padding=1), nn.BatchNorm2d(co), nn.ReLU()]

def mnist_cnn():
    return nn.Sequential(*conv_bn(1, 32), *conv_bn(32, 32), nn.MaxPool2d(2), nn.Dropout2d(0.2),
                         *conv_bn(32, 64), *conv_bn(64, 64), nn.MaxPool2d(2), nn.Dropout2d(0.3),
                         *conv_bn(64, 128), nn.Dropout2d(0.3), nn.Flatten(),
                         nn.Linear(7 * 7 * 128, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(512, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 10))

def mnist_small():
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(3 * 3 * 64, 64), nn.ReLU(), nn.Linear(64, 10))

def bench(name, make, batch, device, steps=10):
    model = make().to(device)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.randn(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    times = []
    for i in range(steps + 2):
        sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
        sync(); t = time.perf_counter()
        opt.zero_grad(); nn.functional.cross_entropy(model(x), y).backward(); opt.step()
        sync()
        if i >= 2: times.append(time.perf_counter() - t)
    ms = sorted(times)[len(times) // 2] * 1000
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({'model': name, 'batch': batch, 'device': device, 'params': params, 'ms_per_step': ms, 'samples_per_s': batch * 1000 / ms, 'torch': torch.__version__}))

batch = int(sys.argv[1])
device = 'cuda' if torch.cuda.is_available() else 'cpu'
bench('mnist-small', mnist_small, batch, device)
bench('mnist-cnn', mnist_cnn, batch, device)
