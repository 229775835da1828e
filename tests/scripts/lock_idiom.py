# The tutorials' lock idiom: read and write inside `with x.lock:`, exact under contention.
from fanmap import Array, Value, parallel, shared_state


@parallel(workers=2)
@shared_state(counter=Value("i", 0), hist=Array("i", 3))
def tally(x, *, counter, hist):
    with counter.lock:
        counter.value = counter.value + 1
    with hist.lock:
        hist[x % 3] = hist[x % 3] + 1
    return x


tally.map(range(300))
print(tally.state.counter.value, tally.state.hist.tolist())
threaded = tally.options(backend="thread", workers=4)
threaded.map(range(300))
print(threaded.state.counter.value, threaded.state.hist.tolist())
