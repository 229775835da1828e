# Async functions defined in the script: processes x coroutines, a late call cancelled,
# a killed worker failing only its calls in flight, and a failure's real traceback.
import asyncio
import glob
import os
import signal

from fanmap import Failure, parallel


@parallel(workers=2, concurrency=4, timeout=1.0, on_error="return")
async def visit(x):
    await asyncio.sleep(30 if x == 5 else 0.01)
    return x * 10


@parallel(workers=2, concurrency=3, on_error="return")
async def crashy(x):
    open(f"in-{x}", "w").close()
    while len(glob.glob("in-*")) < 6:  # all six calls in flight, three in each worker
        await asyncio.sleep(0.01)
    if x == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    await asyncio.sleep(0.5)
    return x


@parallel(workers=2)
async def parse(text):
    await asyncio.sleep(0)
    table = {"one": 1}
    return table[text] * 10


if __name__ == "__main__":
    out = visit.map(range(8))
    print("late:", [type(o.exception).__name__ if isinstance(o, Failure) else o for o in out])
    out = crashy.map(range(6))
    failed = [i for i, o in enumerate(out) if isinstance(o, Failure)]
    print("crashed:", len(failed), 0 in failed)
    print("amap:", asyncio.run(visit.amap([1, 2, 3])))
    parse.map(["one", "two"])
