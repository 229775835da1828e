# Instances of classes defined in the script go to workers and come back, and an
# exception class of the script comes back as itself.
from dataclasses import dataclass

from fanmap import parallel


@dataclass
class Point:
    x: int
    y: int


class TooFar(Exception):
    pass


@parallel(workers=2)
def mirror(p):
    if p.x > 100:
        raise TooFar(f"{p.x} is too far")
    return Point(p.y, p.x)


out = mirror.map([Point(1, 2), Point(3, 4)])
print(out, all(isinstance(p, Point) for p in out))
try:
    mirror.map([Point(1, 2), Point(500, 0)])
except TooFar as exc:
    print("caught", type(exc).__name__, exc)
