# A two-stage pipeline over an endless generator, left early with break: the source is
# read only a little ahead, and nothing is left running.
import itertools

from fanmap import parallel

pulled = 0


def source():
    global pulled
    for i in itertools.count():
        pulled += 1
        yield i


@parallel(workers=2)
def inc(x):
    return x + 1


@parallel(workers=2)
def double(x):
    return 2 * x


results = double.imap(inc.imap(source()))
for i, value in enumerate(results):
    last = value
    if i == 999:
        break
# The documented bound: each lazy map holds at most max(16, 4 x workers) batches of at
# most 1,024 items, plus the batch it is reading and the one it is handing on:
# 2 stages x 18 x 1,024 items.
print("last", last)
print("read ahead within the documented bound:", pulled - 1000 <= 2 * 18 * 1024)
