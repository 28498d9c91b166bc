"""Credit held for requests in flight: 50 concurrent requests of one key never spend past its credit or budget
(the bound: what requests cost beyond what they reserved, zero when reservations are upper bounds)."""

from __future__ import annotations

import asyncio
import random

import pytest

from veilnet.errors import PaymentRequired
from veilnet.store.keys import KeyStore, UsageRow
from veilnet.store.reservations import (
    TEMPLATE_TOKENS_PER_MESSAGE,
    TEMPLATE_TOKENS_PER_REQUEST,
    reservation_usd,
)
from veilnet.store.sql import open_database

ESTIMATE = 0.05


async def serve_requests(store: KeyStore, secret: str, costs: list[float], seed: int) -> tuple[list[float], float]:
    """Each request as the gateway runs it, all at once: authenticate, reserve, be served (a random while),
    settle with its actual cost. Returns the costs of the requests served and what they cost beyond what they
    reserved."""
    rng = random.Random(seed)
    served: list[float] = []

    async def one(n: int, cost: float) -> None:
        key = await store.authenticate(secret)
        try:
            held = store.reserve(key, ESTIMATE)
        except PaymentRequired:
            return
        with held:
            await asyncio.sleep(rng.uniform(0, 0.05))
            held.settle(UsageRow(f"gen-{seed}-{n}", key.id, "m", "miner", 10, 20, cost, 5.0, "ok"))
        served.append(cost)

    await asyncio.gather(*(one(n, cost) for n, cost in enumerate(costs)))
    return served, sum(max(0.0, cost - ESTIMATE) for cost in served)


@pytest.mark.parametrize("kind", ["credit", "budget"])
async def test_fifty_concurrent_requests_cannot_overspend(sql_url: str, kind: str) -> None:
    async with open_database(sql_url) as engine:
        async with KeyStore(engine) as store:
            if kind == "credit":
                secret, key = await store.create("app", credit_usd=1.0)
            else:
                secret, key = await store.create("app", credit_usd=100.0, budget_usd=1.0, budget_reset="daily")
            rng = random.Random(7)
            costs = [rng.uniform(0.02, ESTIMATE) for _ in range(50)]  # each within its reservation
            served, excess = await serve_requests(store, secret, costs, seed=1)
            assert excess == 0.0
            assert len(served) == 20  # $1 holds 20 requests of $0.05 at once; the other 30 are refused
        written = (await KeyStore(engine).all_keys())[0]
        used = written.spent_usd if kind == "credit" else written.period_spent_usd
        assert used == pytest.approx(sum(served)) and used <= 1.0
        assert len(await KeyStore(engine).usage_rows(key.id)) == 20


async def test_the_overdraft_is_bounded_by_what_requests_cost_beyond_their_reservation(sql_url: str) -> None:
    async with open_database(sql_url) as engine:
        async with KeyStore(engine) as store:
            secret, _ = await store.create("app", credit_usd=1.0)
            rng = random.Random(3)
            costs = [rng.uniform(0.02, 0.08) for _ in range(50)]  # some cost more than the $0.05 held
            served, excess = await serve_requests(store, secret, costs, seed=2)
            assert served and excess > 0
        spent = (await KeyStore(engine).all_keys())[0].spent_usd
        assert spent <= 1.0 + excess + 1e-9


async def test_holds_are_released_when_a_request_fails_or_is_cancelled(sql_url: str) -> None:
    async with open_database(sql_url) as engine, KeyStore(engine) as store:
        secret, key = await store.create("app", credit_usd=1.0)
        seen = await store.authenticate(secret)
        held = store.reserve(seen, 0.6)
        assert (await store.authenticate(secret)).remaining_usd == pytest.approx(0.4)
        with pytest.raises(PaymentRequired, match=r"has \$0.400000 of its credit left .* up to \$0.500000"):
            store.reserve(seen, 0.5)
        with pytest.raises(RuntimeError, match="upstream failed"), held:
            raise RuntimeError("upstream failed")
        assert held.state == "released"
        assert (await store.authenticate(secret)).remaining_usd == pytest.approx(1.0)

        async def request() -> None:
            with store.reserve(seen, 0.9):
                await asyncio.sleep(10)

        task = asyncio.create_task(request())
        await asyncio.sleep(0.01)
        assert (await store.authenticate(secret)).remaining_usd == pytest.approx(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await store.authenticate(secret)).remaining_usd == pytest.approx(1.0)
        settled = store.reserve(seen, 0.5)
        settled.settle(UsageRow("gen-1", key.id, "m", "miner", 1, 1, 0.2, 1.0, "ok"))
        settled.release()  # after settling: nothing
        assert (await store.authenticate(secret)).remaining_usd == pytest.approx(0.8)
        with pytest.raises(RuntimeError, match="already settled"):
            settled.settle(UsageRow("gen-2", key.id, "m", "miner", 1, 1, 0.2, 1.0, "ok"))


async def test_a_key_out_of_budget_is_refused_with_its_reset_time(sql_url: str) -> None:
    async with open_database(sql_url) as engine, KeyStore(engine) as store:
        secret, key = await store.create("app", credit_usd=10.0, budget_usd=0.1, budget_reset="weekly")
        seen = await store.authenticate(secret)
        store.record(UsageRow("gen-1", key.id, "m", "miner", 1, 1, 0.1, 1.0, "ok"))
        with pytest.raises(PaymentRequired, match="has spent its weekly budget; it resets at") as refused:
            store.reserve(seen, 0.01)
        assert refused.value.code == "budget_exceeded"


def test_a_reservation_is_the_most_a_request_can_cost() -> None:
    # 1,000 bytes of prompt in 2 messages, up to 500 completion tokens, $2 / $6 per million tokens
    amount = reservation_usd(prompt_bytes=1_000, max_tokens=500, price_input_per_million=2.0,
                             price_output_per_million=6.0, messages=2)
    assert amount == pytest.approx(((1_000 + 2 * TEMPLATE_TOKENS_PER_MESSAGE + TEMPLATE_TOKENS_PER_REQUEST) * 2.0 + 500 * 6.0) / 1e6)
    with pytest.raises(ValueError, match="max_tokens must be >= 0"):
        reservation_usd(prompt_bytes=1, max_tokens=-1, price_input_per_million=1.0, price_output_per_million=1.0)
    with pytest.raises(ValueError, match="price_output_per_million must be a finite number"):
        reservation_usd(prompt_bytes=1, max_tokens=1, price_input_per_million=1.0,
                        price_output_per_million=float("nan"))
