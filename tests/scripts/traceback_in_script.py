# A function defined in the script fails in a worker: the traceback shows the script's
# file, the line, the source line and markers under the right columns.
from fanmap import parallel


@parallel(workers=2)
def parse(text):
    table = {"one": 1}
    return table[text] * 10


parse.map(["one", "two"])
