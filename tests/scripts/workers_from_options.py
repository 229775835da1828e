# The public way to know how many workers a map uses, and fanmap.shutdown().
import fanmap
from fanmap import parallel


@parallel(workers=3)
def pid(x):
    import os

    return os.getpid()


print("workers", pid.workers)
first = set(pid.map(range(30)))
fanmap.shutdown()
second = set(pid.map(range(30)))
print("new workers after shutdown:", not (first & second))
