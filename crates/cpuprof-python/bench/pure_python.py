"""GIL-bound pure Python: deep recursion in two threads (py-spy's worst case: many frames)."""
import threading


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def work():
    for _ in range(5):
        fib(31)


threads = [threading.Thread(target=work, name=f"fib-{i}") for i in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
