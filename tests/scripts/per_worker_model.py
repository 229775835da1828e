# A model loaded once per worker, a connection opened once per worker and closed when
# the workers stop: functions of the script itself, under every start method.
import os

import fanmap
from fanmap import parallel, per_worker


def load_model():
    with open("loads.txt", "a") as f:
        f.write(f"{os.getpid()}\n")
    return {"weight": 3}


def connect():
    conn = f"connection of {os.getpid()}"
    yield conn
    with open("closed.txt", "a") as f:
        f.write(f"{os.getpid()}\n")


@parallel(workers=2)
@per_worker(model=load_model, db=connect)
def score(x, *, model, db):
    return model["weight"] * x, os.getpid()


pids = set()
for _ in range(3):
    results = score.map(range(20))
    pids |= {pid for _, pid in results}
print([value for value, _ in results][:4])
fanmap.shutdown()
with open("loads.txt") as f:
    loads = f.read().split()
with open("closed.txt") as f:
    closed = f.read().split()
print("loaded once per worker:", sorted(loads) == sorted(map(str, pids)))
print("closed once per worker:", sorted(closed) == sorted(map(str, pids)))
