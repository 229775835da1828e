# fanmap.share: an array placed in shared memory once reaches every map's workers with
# no copy: no segment is made for the map (the workers see only the shared one), the
# workers see what the caller writes, and the segment is gone once the array is.
import gc
import os

import numpy as np

import fanmap
from fanmap import parallel

CALLER = os.getpid()


def segments():
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(f"fanmap_{CALLER}_"))


@parallel(workers=2)
def look(i, *, table):
    return float(table.sum()), table.flags.writeable, segments()


table = fanmap.share(np.ones((1000, 500)))  # 4 MB: above the 1 MB that goes by shared memory
placed = segments()
print("placed:", len(placed))
for total, writeable, seen in look.map(range(4), table=table):
    assert seen == placed, (seen, placed)  # nothing was copied for the map
    assert (total, writeable) == (500000.0, False), (total, writeable)
print(look.map(range(2), table=table)[0][:2])
table[0, 0] = 101.0  # workers map the same memory
print(look.map(range(2), table=table[:10])[0][:2])  # a slice travels as a view too
for view in (table.T, table[:, ::2], table[::-3, 5:9]):  # strided views travel as views too
    total, writeable, seen = look.map([0], table=view)[0]
    assert (total, writeable, seen) == (float(view.sum()), False, placed), (total, writeable, seen)
print("strided views: read-only, no copy")
del table, view  # the array and every view of it
gc.collect()
print("left:", segments())


@parallel(workers=2)
def fails(i, *, table):
    if i == 1:
        raise ValueError(f"item {i} fails")
    return float(table[0, 0])


# After a map that raised, the array still goes with its last reference: the exception
# holds no cycle back to the map's keywords (the collector is off to show it).
gc.disable()
table = fanmap.share(np.ones((1000, 500)))
try:
    fails.map(range(4), table=table)
except ValueError as exc:
    print("raised:", exc)
print("placed:", len(segments()))
del table
print("left after a map that raised:", segments())
