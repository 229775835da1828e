# Chunk sizes as the Performance guide describes them: a map of calls of a few ms takes
# chunks of up to about 50 ms of work far from the end (few round trips), an imap over
# the same list keeps chunks of about 10 ms (results come as they are ready), and a
# timeout longer than a wait can last is taken.
import math
import time

import fanmap
from fanmap import parallel


@parallel(workers=2)
def work(x):
    time.sleep(0.003)
    return x * 2


items = list(range(400))
with fanmap.insights() as report:
    assert work.map(items) == [x * 2 for x in items]
    assert list(work.imap(items)) == [x * 2 for x in items]
maps = report.to_dict()["maps"]
print("map chunks", maps[0]["chunks"]["count"])
print("imap chunks", maps[1]["chunks"]["count"])
print(work.options(timeout=1e7).map([1, 2]), work.options(timeout=float("inf")).map([3]))


# Large items: a chunk's items and results stay near 512 KiB in the worker (about 250
# strings of 2,000 characters); and timeout=math.inf is no timeout: calls stay batched.
@parallel(workers=2)
def length(text):
    return len(text)


texts = [str(i).rjust(2000, "x") for i in range(5000)]
with fanmap.insights() as report:
    assert length.map(texts) == [2000] * 5000
    assert work.options(timeout=math.inf).map([0] * 40) == [0] * 40
    assert length.options(timeout=math.inf).map(texts[:2000]) == [2000] * 2000
maps = report.to_dict()["maps"]
print("large items, largest chunk", maps[0]["chunks"]["max"])
print("timeout=inf, chunks", maps[1]["chunks"]["count"], maps[2]["chunks"]["count"])
