"""The request coalescer: answers reach their callers, batches form, errors stay in their batch."""

import asyncio
import random

from agents.llm.base import Coalescer


def test_answers_reach_the_right_callers_under_concurrency():
    seen_batches: list[list[int]] = []

    def double(batch: list[int]) -> list[int]:
        seen_batches.append(list(batch))
        return [2 * x for x in batch]

    co = Coalescer(double, max_batch=16)
    rng = random.Random(0)
    delays = [rng.randint(0, 30) for _ in range(200)]

    async def caller(x: int) -> tuple[int, int]:
        for _ in range(delays[x]):  # callers arrive at scattered moments
            await asyncio.sleep(0)
        return x, await co.submit(x)

    async def main():
        return await asyncio.gather(*(caller(x) for x in range(200)))

    results = asyncio.run(main())
    assert all(y == 2 * x for x, y in results)
    assert sorted(x for b in seen_batches for x in b) == list(range(200))
    assert max(len(b) for b in seen_batches) <= 16
    assert len(seen_batches) < 50  # requests were gathered, not run one by one


def test_a_failing_batch_fails_only_its_callers():
    def fn(batch: list[int]) -> list[int]:
        if 13 in batch:
            raise ValueError("bad request 13")
        return batch

    co = Coalescer(fn, max_batch=4)

    async def main():
        first = await asyncio.gather(*(co.submit(x) for x in (10, 11, 12, 13)), return_exceptions=True)
        second = await asyncio.gather(*(co.submit(x) for x in (20, 21)))
        return first, second

    first, second = asyncio.run(main())
    assert all(isinstance(r, ValueError) for r in first)
    assert second == [20, 21]


def test_a_short_result_list_fails_every_caller_instead_of_hanging():
    co = Coalescer(lambda batch: batch[:-1], max_batch=4)

    async def main():
        return await asyncio.wait_for(
            asyncio.gather(*(co.submit(x) for x in range(3)), return_exceptions=True), timeout=5)

    results = asyncio.run(main())
    assert len(results) == 3
    assert all(isinstance(r, ValueError) and "2 results for 3 requests" in str(r) for r in results)
