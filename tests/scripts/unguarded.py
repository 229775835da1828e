# No main guard: the top-level code runs once, in the caller, under every start method.
from fanmap import parallel

print("top level ran")


@parallel(workers=2)
def square(x):
    return x * x


print(square.map(range(6)))
