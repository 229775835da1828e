# A long map with a checkpoint: killed part way, then run again, it computes only what
# is left. Each call notes its item in a file, marked with the run's name (argv[1]).
import sys
import time

from fanmap import Checkpoint, parallel

RUN = sys.argv[1]


@parallel(workers=2)
def work(x):
    with open("effects.txt", "a") as f:
        f.write(f"{RUN} {x}\n")
    time.sleep(0.005)
    return x * 3


out = work.options(checkpoint="work.sqlite").map(range(1000))
assert out == [x * 3 for x in range(1000)]
print("done", Checkpoint("work.sqlite").done)
