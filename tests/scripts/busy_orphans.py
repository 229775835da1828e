# A long map whose caller is killed: the busy workers must die with it.
import os
import sys
import time

from fanmap import parallel


@parallel(workers=2, chunksize=1)
def hold(x):
    open(os.path.join(sys.argv[1], str(os.getpid())), "w").close()
    time.sleep(120)
    return x


hold.map(range(2))
