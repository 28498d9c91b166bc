"""The per-key rate limiter's cost on the hot path, and how well it holds a limit across processes.

Admission cost, one process, the bundled Redis, side by side in one run (admits/s, median of three rounds):
  none     no limiter (the loop's own cost)
  leases   veilnet's KeyRateLimiter: admits from leases taken from Redis a few requests at a time
  script   one atomic Lua call per request (auto-pipelined): exact across processes, a round trip each
at 1 and 64 concurrent callers. Then the limit across processes: 2 and 4 processes share one Redis and hammer
one key (limit 3,000 a minute) with bursts for a few seconds; the requests all of them admitted, over the
limit (1.00 = exact; the per-process counting this replaced admitted 2-2.5x with two processes).
Run: .venv/bin/python bench/bench_ratelimit.py [seconds per cell, default 2]
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

ROUNDS = 3
SCRIPT = """
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], 120000)
if tonumber(ARGV[1]) > 0 and n > tonumber(ARGV[1]) then return 0 end
return 1
"""


async def rate(admit: Callable[[int], Awaitable[None]], concurrency: int, seconds: float) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await admit(n)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return done / (time.perf_counter() - started)


async def admission_costs(url: str, seconds: float) -> None:
    from veilnet.store.ratelimit import KeyRateLimiter
    from veilnet.store.redis import PipelinedScript, redis_from_url

    redis = redis_from_url(url)
    script = PipelinedScript(redis, SCRIPT)
    limiter = KeyRateLimiter(redis, requests_per_minute=10**9, tokens_per_minute=0)

    async def none(_: int) -> None:
        return None

    async def leases(n: int) -> None:
        await limiter.admit(n % 100)

    async def per_request(n: int) -> None:
        await script([f"bench:ratelimit:{n % 100}"], [10**9])

    targets = {"none": none, "leases": leases, "script": per_request}
    print(f"{'target':<8}{'callers':>8}{'admits/s':>12}{'vs none':>9}")
    for concurrency in (1, 64):
        rounds: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(ROUNDS):
            for name, admit in targets.items():
                rounds[name].append(await rate(admit, concurrency, seconds))
        base = statistics.median(rounds["none"])
        for name, values in rounds.items():
            median = statistics.median(values)
            print(f"{name:<8}{concurrency:>8}{median:>12,.0f}{median / base:>9.3f}")
    await limiter.aclose()
    await redis.aclose(close_connection_pool=True)


def hammer(url: str, limit: int, seconds: float, admitted: multiprocessing.Queue[int]) -> None:
    import random

    from veilnet.errors import RateLimited
    from veilnet.store.ratelimit import KeyRateLimiter
    from veilnet.store.redis import redis_from_url

    async def main() -> int:
        redis = redis_from_url(url)
        count = 0
        rng = random.Random()
        async with KeyRateLimiter(redis, requests_per_minute=limit, tokens_per_minute=0) as limiter:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                results = await asyncio.gather(*(limiter.admit(1) for _ in range(rng.randint(1, 40))),
                                               return_exceptions=True)
                count += sum(r is None for r in results)
                assert all(r is None or isinstance(r, RateLimited) for r in results)
                await asyncio.sleep(rng.uniform(0, 0.01))
        await redis.aclose(close_connection_pool=True)
        return count

    admitted.put(asyncio.run(main()))


def across_processes(url: str, seconds: float) -> None:
    limit = 3_000
    print(f"{'processes':<10}{'limit':>7}{'admitted':>10}{'ratio':>8}")
    for processes in (2, 4):
        import redis

        redis.Redis(unix_socket_path=url.removeprefix("unix://")).flushall()
        queue: multiprocessing.Queue[int] = multiprocessing.Queue()
        workers = [multiprocessing.Process(target=hammer, args=(url, limit, seconds, queue)) for _ in range(processes)]
        for worker in workers:
            worker.start()
        total = sum(queue.get(timeout=120) for _ in workers)
        for worker in workers:
            worker.join()
        print(f"{processes:<10}{limit:>7}{total:>10}{total / limit:>8.3f}")


async def bundled(seconds: float) -> None:
    from veilnet.store.redis import bundled_redis_server

    async with bundled_redis_server() as url:
        await admission_costs(url, seconds)
        await asyncio.to_thread(across_processes, url, seconds * 2)


if __name__ == "__main__":
    asyncio.run(bundled(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0))
