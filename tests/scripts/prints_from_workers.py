# print() in a worker reaches the caller's output, in order per worker, before the map returns.
import sys

from fanmap import parallel


@parallel(workers=2)
def shout(x):
    print(f"item {x}")
    print(f"err {x}", file=sys.stderr)
    return x


result = shout.map(range(6))
print("result", result)
