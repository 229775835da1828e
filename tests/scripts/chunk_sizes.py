# Chunk sizes as the Performance guide describes them: a map of calls of a few ms takes
# chunks of up to about 50 ms of work far from the end (few round trips), an imap over
# the same list keeps chunks of about 10 ms (results come as they are ready), and a
# timeout longer than a wait can last is taken.
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
