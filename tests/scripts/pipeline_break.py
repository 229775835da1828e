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
print("last", last)
print("read ahead at most 20000:", pulled - 1000 <= 20000)
