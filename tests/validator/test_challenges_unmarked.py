"""A miner cannot tell challenges from organic requests by their headers, parameters or timing.

Real parts throughout: the devnet chain, a real miner over loopback HTTP (behind a hop that records what
arrives, as a cheating miner would), the real gateway relaying an app population's requests (each app with
its own parameters, Poisson arrivals), and the real challenger imitating them from the organic stream in
Redis. The miner's best shot is a classifier trained on what it saw, labelled with the truth: a naive Bayes
over every header (names, order and values; the Epistula signature, uuid and timestamp are random either way),
every parameter the request set, the order of its fields and the time since the validator's previous
request. Measured by two-fold cross-validation, its balanced accuracy must stay within a small margin of
chance; the same classifier finds a planted tell (the old ``X-Veilnet-Traffic`` header, or the old challenges'
shape: always logprobs, never streamed) at once, so the test has the power to fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from tests.conftest import serve_asgi
from tests.miner.conftest import fake_upstream_app
from tests.validator.subnet import MinerSpec, Subnet, devnet_subnet

from veilnet.gateway import GatewayContext, create_gateway_app
from veilnet.gateway.directory import MinerDirectory
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.relay import RelayClient
from veilnet.settings import ValidatorSettings
from veilnet.store.keys import KeyStore
from veilnet.store.organic import OrganicStream, RequestCounter
from veilnet.store.sql import open_database
from veilnet.validator import run_challenger

MODEL = "upstream-echo"
RANDOM_HEADERS = {"epistula-timestamp", "epistula-uuid", "epistula-request-signature", "content-length"}

# the app population: each app sends its own parameters (what real clients do: one SDK call, fixed settings)
APPS: list[dict[str, Any]] = [
    {"stream": True, "temperature": 0.7, "max_tokens": 512, "stream_options": {"include_usage": True}},
    {"temperature": 0.0, "max_completion_tokens": 200},
    {"logprobs": True, "top_logprobs": 3, "temperature": 1.0, "stop": ["\n\n"], "seed": 7},
    {},
    {"top_p": 0.9, "presence_penalty": 0.5, "max_tokens": 64, "stream": True},
]


class Recorder:
    """A hop in front of the miner app keeping (arrival time, headers, body) of every chat request."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, list[tuple[bytes, bytes]], bytes]] = []
        self.on = False

    def __call__(self, app: ASGIApp) -> ASGIApp:
        async def hop(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["path"] != "/v1/chat/completions" or not self.on:
                await app(scope, receive, send)
                return
            arrived = time.monotonic()
            messages: list[Message] = []
            while True:
                message = await receive()
                messages.append(message)
                if not message.get("more_body"):
                    break
            self.seen.append((arrived, list(scope["headers"]), b"".join(m.get("body", b"") for m in messages)))
            queued = iter(messages)

            async def replay() -> Message:
                return next(queued, None) or await receive()

            await app(scope, replay, send)

        return hop


PARAMETERS = ("frequency_penalty", "logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "n",
              "presence_penalty", "seed", "stop", "stream", "stream_options", "temperature", "top_logprobs", "top_p",
              "user")


def features(rows: Sequence[tuple[float, list[tuple[bytes, bytes]], bytes]]) -> list[dict[str, str]]:
    """What the miner can read off each request, besides its content: one categorical value per feature,
    the same features for every request (a parameter not set is ``-``)."""
    out = []
    previous = None
    for arrived, headers, body in rows:
        request = json.loads(body)
        named = [(k.decode().lower(), v.decode()) for k, v in headers]
        row = {"headers": "|".join(f"{k}:{'*' if k in RANDOM_HEADERS else v}" for k, v in named),
               "fields": ",".join(k for k in request if k != "messages"),
               "system": str(any(m.get("role") == "system" for m in request["messages"]))}
        for name in PARAMETERS:
            value = request.get(name)
            row[name] = "-" if value is None else "set" if name == "seed" else json.dumps(value, sort_keys=True)
        gap = arrived - previous if previous is not None else 1.0
        previous = arrived
        row["gap"] = str(math.floor(math.log2(max(gap, 1e-3)) * 2))  # half-octave bins
        out.append(row)
    return out


def naive_bayes_balanced_accuracy(rows: list[dict[str, str]], labels: list[bool], rng: random.Random) -> float:
    """Two-fold cross-validated balanced accuracy of a categorical naive Bayes (Laplace smoothing)."""
    order = list(range(len(rows)))
    rng.shuffle(order)
    folds = [order[::2], order[1::2]]
    hits: dict[bool, list[bool]] = {True: [], False: []}
    names = sorted(rows[0])
    for train, test in ((folds[0], folds[1]), (folds[1], folds[0])):
        counts: dict[tuple[bool, str], Counter[str]] = defaultdict(Counter)
        totals = Counter(labels[i] for i in train)
        for i in train:
            for name in names:
                counts[labels[i], name][rows[i][name]] += 1
        arity = {name: len({rows[i][name] for i in train}) + 1 for name in names}
        for i in test:
            score = {}
            for label in (True, False):
                score[label] = math.log((totals[label] + 1) / (len(train) + 2)) + sum(
                    math.log((counts[label, name][rows[i][name]] + 1) / (totals[label] + arity[name]))
                    for name in names)
            hits[labels[i]].append((score[True] > score[False]) == labels[i])
    return (sum(hits[True]) / len(hits[True]) + sum(hits[False]) / len(hits[False])) / 2


@contextlib.asynccontextmanager
async def gateway_for(net: Subnet, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """The real gateway, signing with the validator's hotkey and counting and sampling its organic traffic
    in the Redis the challenger reads; yields (its URL, an API key)."""
    me = net.validator.ss58_address
    async with contextlib.AsyncExitStack() as stack:
        sql = await stack.enter_async_context(open_database(f"sqlite+aiosqlite:///{tmp_path / 'gw.sqlite3'}"))
        keys = await stack.enter_async_context(KeyStore(sql))
        secret, _ = await keys.create("apps", credit_usd=100.0)
        directory = MinerDirectory(net.http, me)
        await directory.refresh(await net.chain.get_metagraph(net.netuid))

        async def scores() -> dict[str, float]:
            return {}

        ctx = GatewayContext(
            keypair=net.validator, keys=keys, directory=directory, http=net.http, scores=scores,
            relay=await stack.enter_async_context(RelayClient()), netuid=net.netuid,
            organic=await stack.enter_async_context(OrganicStream(net.redis, net.netuid, sample_rate=1.0)),
            organic_counts=await stack.enter_async_context(RequestCounter(net.redis, "organic", me, net.netuid)))
        url = await stack.enter_async_context(serve_asgi(create_gateway_app(ctx), lifespan="off"))
        yield url, secret


async def apps(url: str, secret: str, rate: float, seconds: float, rng: random.Random) -> int:
    """The app population's requests through the gateway at Poisson arrivals; returns how many were answered."""
    answered = 0

    async def one(http: aiohttp.ClientSession, body: dict[str, Any]) -> None:
        nonlocal answered
        async with http.post(f"{url}/v1/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {secret}"}) as response:
            await response.read()
            answered += response.status == 200

    async with aiohttp.ClientSession() as http, asyncio.TaskGroup() as group:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            params = rng.choice(APPS)
            messages = [{"role": "user", "content": f"app question {rng.randrange(10**9)}: {rng.choice(['why', 'how'])}?"}]
            if rng.random() < 0.3:
                messages.insert(0, {"role": "system", "content": "Be brief."})
            group.create_task(one(http, {"model": MODEL, "messages": messages, **params}))
            await asyncio.sleep(rng.expovariate(rate))
    return answered


def canonical(document: Any) -> str:
    return json.dumps(document, sort_keys=True)


async def test_a_miner_cannot_tell_challenges_from_organic_requests(redis_client: aioredis.Redis,
                                                                    tmp_path: Path) -> None:
    recorder = Recorder()
    rng = random.Random(19)
    async with serve_asgi(fake_upstream_app()) as upstream, \
            OpenAIUpstreamEngine(f"{upstream}/v1", [MODEL]) as engine, \
            devnet_subnet(redis_client, {"m": MinerSpec(engine, hop=recorder)}, prefix="Unmarked") as net, \
            gateway_for(net, tmp_path) as (url, secret):
        assert await apps(url, secret, 8.0, 2.0, rng) > 0  # organic traffic the challenger can imitate
        recorder.on = True
        # a small probe round beside the challenges (it spends the same synthetic share: a default round's 8
        # workers through two 10 s windows left 121 to 309 challenges in 25 s, depending on the machine's load)
        ctx = net.context(settings=ValidatorSettings(reference_models=[MODEL], challenges_per_window=720,
                                                     probe_concurrency=2, probe_window=2.0))
        challenger = asyncio.create_task(run_challenger(ctx, round_interval=0.2))
        try:
            answered = await apps(url, secret, 12.0, 25.0, rng)
        finally:
            challenger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await challenger
        recorder.on = False
        records = []
        while batch := await ctx.pipeline.claim_answers(count=500, block_ms=50):
            records += [record for _, record in batch]
    # probe rounds are left out: their windows show as load (docs/incentives.md says why that pays nothing)
    probes = Counter(canonical(r.request) for r in records if r.request is not None and r.observation.kind == "probe")
    challenges = Counter(canonical(r.request) for r in records
                         if r.request is not None and r.observation.kind != "probe")
    labels, rows = [], []
    for (_, _, body), row in zip(recorder.seen, features(recorder.seen), strict=True):
        key = canonical(json.loads(body))
        if probes[key] > 0:
            probes[key] -= 1
            continue
        labels.append(challenges[key] > 0)
        challenges[key] -= 1
        rows.append(row)
    assert sum(labels) >= 150 and len(labels) - sum(labels) >= 150 and answered >= 150
    accuracy = naive_bayes_balanced_accuracy(rows, labels, random.Random(1))
    print(f"\n{sum(labels)} challenges, {len(labels) - sum(labels)} organic requests: the miner's balanced "
          f"accuracy {accuracy:.3f} (chance 0.5)")
    assert accuracy <= 0.6

    # the test's power: a planted tell is found at once
    def planted(change: Callable[[dict[str, str], bool], dict[str, str]]) -> float:
        return naive_bayes_balanced_accuracy([change(row, label) for row, label in zip(rows, labels, strict=True)],
                                             labels, random.Random(1))

    header = planted(lambda row, label: {**row, "x-veilnet-traffic": "synthetic" if label else "organic"})
    # the challenges of old: always logprobs, never streamed (stream false set explicitly)
    old_shape = planted(lambda row, label: {**row, "logprobs": "true", "stream": "false"} if label else row)
    print(f"planted tells: a traffic header {header:.3f}, the old challenge shape {old_shape:.3f}")
    assert header >= 0.95 and old_shape >= 0.9
    assert len({row["fields"] for row in rows}) >= len(APPS)  # every app's shape reached the miner
