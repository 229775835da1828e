# The tutorials' lazy global: loaded once per worker, across three maps.
import os

from fanmap import parallel

_MODEL = None


def load_model():
    with open("loads.txt", "a") as f:
        f.write(f"{os.getpid()}\n")
    return {"scale": 3}


def get_model():
    global _MODEL
    if _MODEL is None:
        _MODEL = load_model()
    return _MODEL


@parallel(workers=2)
def score(x):
    return get_model()["scale"] * x, os.getpid()


pids = set()
for _ in range(3):
    results = score.map(range(20))
    pids |= {pid for _, pid in results}
print([value for value, _ in results][:4])
with open("loads.txt") as f:
    loads = f.read().split()
print("loads per worker:", sorted(loads.count(str(pid)) for pid in pids))
