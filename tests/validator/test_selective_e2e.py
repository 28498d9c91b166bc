"""End to end on the devnet chain, the selective cheat: a miner honest on what looks like a challenge (it knows
the apps' prompts) that serves apps canned text at 10x usage. Organic traffic goes through
the real gateway, which passes every answer the miners signed to the real validator's scorers and bills apps from
its own token count: the cheater ends banned with weight 0 and no incentive, and apps paid for what the gateway
counted, not the 10x the cheater claimed."""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import replace
from pathlib import Path

import aiohttp
import openai
import pytest
import redis.asyncio as aioredis
from tests.conftest import serve_asgi
from tests.validator.selective import APP_PROMPT, CANNED, INFLATION, SelectiveEngine
from tests.validator.subnet import wait_epochs
from tests.validator.test_validator_e2e import MINERS, SMOL, VAL_H, subnet

from veilnet.gateway import GatewayContext, create_gateway_app
from veilnet.gateway.directory import MinerDirectory
from veilnet.gateway.outcomes import OrganicOutcomes
from veilnet.gateway.verification import OrganicVerifier
from veilnet.relay import RelayClient
from veilnet.scoring import ScoreParams
from veilnet.settings import ValidatorSettings
from veilnet.store.keys import KeyStore
from veilnet.store.scores import LatestScores, ScoreStore
from veilnet.store.sql import open_database
from veilnet.store.validator_pipeline import ValidatorPipeline
from veilnet.validator import run_validator

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.mark.timeout(900)  # a loaded machine verifies slowly; the waits below have their own ceilings
async def test_selective_cheat_is_banned_by_verified_organic_answers(
    tmp_path: Path, redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture,
) -> None:
    engines: list[SelectiveEngine] = []

    def selective(honest: object) -> SelectiveEngine:
        engines.append(SelectiveEngine(honest))  # type: ignore[arg-type]
        return engines[-1]

    hot = {name: h.ss58_address for name, (_, h) in MINERS.items()}
    async with subnet(tmp_path, redis_client, cheater=selective) as (net, reference), \
            aiohttp.ClientSession() as http, contextlib.AsyncExitStack() as stack:
        chain, netuid = net.chain, net.netuid
        pipeline = ValidatorPipeline(redis_client, VAL_H.ss58_address, netuid)
        db = await stack.enter_async_context(open_database(f"sqlite+aiosqlite:///{tmp_path / 'gw.sqlite3'}"))
        keys = await stack.enter_async_context(KeyStore(db))
        secret, _ = await keys.create("apps", credit_usd=100.0)
        directory = MinerDirectory(http, VAL_H.ss58_address)
        await directory.refresh(await chain.get_metagraph(netuid))
        ctx = GatewayContext(
            keypair=VAL_H, keys=keys, directory=directory, http=http, netuid=netuid,
            scores=await stack.enter_async_context(LatestScores(ScoreStore(redis_client, VAL_H.ss58_address, netuid))),
            relay=await stack.enter_async_context(RelayClient()), rng=random.Random(4),
            on_attempt=await stack.enter_async_context(OrganicOutcomes(pipeline, flush_seconds=0.1)),
            verifier=await stack.enter_async_context(
                OrganicVerifier(pipeline, VAL_H.ss58_address, rate=1.0, flush_seconds=0.1)),
            tokenizers={SMOL: await reference.tokenizer(SMOL)})
        url = await stack.enter_async_context(serve_asgi(create_gateway_app(ctx)))
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
        stack.push_async_callback(client.close)
        # probe rounds every ~20 s: chat credit comes from them, and a first round sent before the chain gave
        # the validator its permit measures nothing, so the honest miners must not wait the default 300 s for
        # the next. The scorer verifies every answer on a shared 2-core machine: few challenges (organic audits
        # catch this cheat) keep probe answers from queueing behind them, and a ban of 100 tempos (tempos are
        # ~3 s here) outlasts the time a loaded machine takes to score the honest miners
        settings = ValidatorSettings(verify_rate=1.0, reference_models=[SMOL], challenges_per_window=12,
                                     probe_max_tokens=32, probe_concurrency=2, probe_interval=20.0,
                                     probe_window=4.0)
        ctx = replace(net.context(reference=reference, seed=5, settings=settings), params=ScoreParams(ban_tempos=100))
        validator = asyncio.create_task(run_validator(ctx, round_interval=0.2))
        try:
            for _ in range(600):  # miners serve a validator once the chain gives it a permit (its first epoch)
                graph = await chain.get_metagraph(netuid)
                if graph.by_hotkey(VAL_H.ss58_address).validator_permit:  # type: ignore[union-attr]
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # the miners' metagraphs are refreshed every 0.2 s
            billed = []
            for index in range(3):  # organic traffic to every miner, whole and streamed
                for name in ("honest1", "honest2", "cheater"):
                    answer = await client.chat.completions.create(
                        model=SMOL, messages=[{"role": "user", "content": f"{APP_PROMPT} {index}."}],
                        max_tokens=16, extra_body={"provider": {"only": [hot[name]]}}, stream=False)
                    if name == "cheater":
                        assert answer.choices[0].message.content == CANNED
                        assert answer.usage is not None
                        billed.append(answer.usage.completion_tokens)
            assert engines[0].cheated >= 3
            # the cheater claimed 10x its (canned) answers' length; apps paid the gateway's count of them
            canned = len(await (await reference.tokenizer(SMOL)).text_tokens(CANNED))
            assert billed and all(tokens <= canned + 1 < canned * INFLATION for tokens in billed)

            store = ScoreStore(redis_client, VAL_H.ss58_address, netuid)
            for _ in range(1800):  # until the verified organic answers have banned the cheater
                states, tempo = await store.load()
                cheater = states.get(hot["cheater"])
                if (cheater is not None and cheater.banned_until >= tempo
                        and all(states.get(hot[n]) is not None and states[hot[n]].ema > 0
                                for n in ("honest1", "honest2"))):
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"the cheater was never banned while both honest miners scored: {states}")
            val_uid = (await chain.get_metagraph(netuid)).uid_of(VAL_H.ss58_address)
            graph = await chain.get_metagraph(netuid)
            uids = {name: graph.uid_of(address) for name, address in hot.items()}
            for _ in range(1800):
                weights = dict(chain.state.subnets[netuid].neurons[val_uid].weights)  # type: ignore[index]
                if weights.get(uids["cheater"], 0) == 0 and weights.get(uids["honest1"], 0) > 0 \
                        and weights.get(uids["honest2"], 0) > 0:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("weights without the cheater never reached the chain")
            await wait_epochs(chain, netuid, 1)
            graph = await chain.get_metagraph(netuid)
            incentive = {name: graph.by_hotkey(address).incentive for name, address in hot.items()}  # type: ignore[union-attr]
            assert incentive["cheater"] == 0
            assert incentive["honest1"] > 0 and incentive["honest2"] > 0
            assert engines[0].honest > 0  # it did answer the validator's challenges and probes honestly
            failed = [r for r in caplog.records if r.getMessage() == "verification failed"]
            # only the cheater failed, and organic audits caught it (a challenge replaying an app's prompt may too)
            assert failed and {r.miner for r in failed} == {hot["cheater"]}  # type: ignore[attr-defined]
            assert "audit" in {r.kind for r in failed}  # type: ignore[attr-defined]
        finally:
            validator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await validator
