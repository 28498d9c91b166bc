"""The files of a scaffolded task package, as ``string.Template`` texts (``$name`` placeholders)."""

from __future__ import annotations

__all__ = ["DOCUMENTS", "ENGINE", "INIT", "PYPROJECT", "README", "TASK", "TESTS"]

PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$distribution"
version = "0.1.0"
description = "$summary"
requires-python = ">=3.11"
dependencies = ["veilnet"]

# veilnet finds the task through this entry point once the package is installed
[project.entry-points."veilnet.tasks"]
$name = "$module.task:${prefix}Task"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"

[tool.ruff]
line-length = 120

[tool.ruff.lint.isort]
known-first-party = ["$module"]
known-third-party = ["veilnet"]

[tool.mypy]
strict = true
mypy_path = "src"
'''

INIT = '''"""$summary: a veilnet task (see README.md)."""

from $module.documents import MODEL, ${prefix}Answer, ${prefix}Request
from $module.task import ${prefix}Task

__all__ = ["MODEL", "${prefix}Answer", "${prefix}Request", "${prefix}Task"]
'''

DOCUMENTS = '''"""The $name task's typed documents: what apps and validators send, what miners answer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MODEL", "${prefix}Answer", "${prefix}Request"]

#: The model name miners serve the task under (rename it when you bring your own model).
MODEL = "$name-v1"


class ${prefix}Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1)
$request_fields    user: str | None = None


class ${prefix}Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str
    object: Literal["$name.result"] = "$name.result"
    created: int
    model: str
$answer_fields'''

ENGINE = '''"""The engine a miner runs for $name, and the validator's own way to the right answer.

``solve`` is the placeholder to replace with your model: it answers deterministically from the request (a
digest of its inputs), so challenges, verification and the devnet work from the first minute. Keep its
signature: the miner's handler serves what it returns, and the validator calls it to know the right answer
(``known_truth``: at challenge time; ``reference`` and ``similarity``: on the answer's request).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time

from veilnet.errors import NotFound

from $module.documents import MODEL, ${prefix}Answer, ${prefix}Request

__all__ = ["${prefix}Handler", "solve"]


def solve(request: ${prefix}Request) -> dict[str, object]:
    """The right outputs for ``request``. Replace with your model."""
    inputs = request.model_dump(mode="json", exclude={"model", "user"})
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return {
$solve_fields    }


class ${prefix}Handler:
    """Serves ``model`` on a miner (an async context manager: load your model in ``__aenter__``)."""

    def __init__(self, model: str = MODEL) -> None:
        self._model = model

    async def __aenter__(self) -> ${prefix}Handler:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def models(self) -> list[str]:
        return [self._model]

    async def serve(self, request: ${prefix}Request) -> ${prefix}Answer:
        if request.model != self._model:
            raise NotFound(f"model {request.model!r} is not served here; served: {self._model}")
        return ${prefix}Answer(id=f"$name-{secrets.token_hex(12)}", created=int(time.time()), model=self._model,
                               **solve(request))  # type: ignore[arg-type]
'''

TASK = '''"""The $name task: $summary.

Verification: $verification (README.md says how it works).
"""

from __future__ import annotations

import math
import random
from typing import ClassVar

from pydantic import BaseModel, JsonValue
from rapidfuzz.distance import Levenshtein
from veilnet.tasks.corpus import default_corpus
from veilnet.tasks.interface import Challenge, ChallengeTools, HandlerTools, Task, TaskHandler, VerifyTools
from veilnet.tasks.verdict import Verdict, failed

from $module.documents import MODEL, ${prefix}Answer, ${prefix}Request
from $module.engine import ${prefix}Handler, solve

__all__ = ["MIN_QUALITY", "VERIFICATION", "${prefix}Task", "closeness", "random_request"]

VERIFICATION = "$verification"
#: Below this quality an answer is what no honest miner sends: the verdict fails (the miner is caught).
MIN_QUALITY = $min_quality
OUTPUTS: dict[str, str] = $outputs


def random_request(rng: random.Random, model: str) -> ${prefix}Request:
    """A challenge's request, drawn from ``rng`` (words from veilnet's corpus of human prose)."""
    words = default_corpus().vocabulary
    return ${prefix}Request(
        model=model,
$random_fields    )


def closeness(kind: str, got: object, want: object) -> float:
    """How close one output comes to the right one, in [0, 1]."""
    if kind == "number" and isinstance(got, int | float) and isinstance(want, int | float):
        if VERIFICATION != "similarity":
            return 1.0 if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9) else 0.0
        return max(0.0, 1.0 - abs(got - want) / max(abs(want), 1e-9))
    if kind == "string" and isinstance(got, str) and isinstance(want, str) and VERIFICATION == "similarity":
        return float(Levenshtein.normalized_similarity(got, want))
    return 1.0 if type(got) is type(want) and got == want else 0.0


class ${prefix}Task(Task[${prefix}Request, ${prefix}Answer]):
    name: ClassVar[str] = "$name"
    request_type: ClassVar[type[BaseModel]] = ${prefix}Request
    answer_type: ClassVar[type[BaseModel]] = ${prefix}Answer
    default_model: ClassVar[str] = MODEL
    unit: ClassVar[str] = "request"

    def units(self, request: ${prefix}Request) -> float:
        return 1.0

    async def challenge(self, tools: ChallengeTools) -> Challenge[${prefix}Request]:
        request = random_request(tools.rng, tools.model)
        truth: JsonValue = solve(request) if VERIFICATION == "known_truth" else None  # type: ignore[assignment]
        return Challenge(request, truth)

    async def verify(self, request: ${prefix}Request, truth: JsonValue, answer: object,
                     tools: VerifyTools) -> Verdict:
        parsed = self.parse_answer(answer)
        if isinstance(parsed, str):
            return failed(parsed)
        if parsed.model != request.model:
            return failed(f"answered as model {parsed.model!r}, asked {request.model!r}")
        if VERIFICATION == "known_truth":
            if not isinstance(truth, dict):
                return failed("a challenge without its truth cannot be verified", code="no_truth")
            expected: dict[str, object] = dict(truth)
        else:
            expected = solve(request)  # the reference re-run on the same request
        scores = {field: closeness(kind, getattr(parsed, field), expected.get(field))
                  for field, kind in OUTPUTS.items()}
        quality = sum(scores.values()) / len(scores)
        off = [field for field, score in scores.items() if score < 1.0]
        reason = f"off: {', '.join(off)}" if off else None
        if quality < MIN_QUALITY:
            return failed(f"quality {quality:.2f} below {MIN_QUALITY} ({reason})", quality=quality, checked=len(scores))
        return Verdict(ok=True, quality=quality, reason=reason, checked=len(scores))

    def handler(self, tools: HandlerTools) -> TaskHandler:
        return ${prefix}Handler(str(tools.options.get("model", MODEL)))
'''

TESTS = '''"""The $name task's own tests: honest answers verify, cheats do not, the miner's handler serves it, and
veilnet finds the task through its entry point (the package installed)."""

from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any

import pytest
from veilnet.errors import NotFound
from veilnet.tasks.interface import Challenge, ChallengeTools, HandlerTools, VerifyTools
from veilnet.tasks.registry import installed_tasks

from $module.documents import MODEL, ${prefix}Request
from $module.task import ${prefix}Task

TASK = ${prefix}Task()


async def challenges(count: int, seed: int = 1) -> list[Challenge[${prefix}Request]]:
    rng = random.Random(seed)
    return [await TASK.challenge(ChallengeTools(rng=rng, model=MODEL)) for _ in range(count)]


async def honest(challenge: Challenge[${prefix}Request]) -> dict[str, Any]:
    async with TASK.handler(HandlerTools(data_dir=Path("."))) as handler:
        answer = await handler.serve(challenge.request)
    return answer.model_dump(mode="json")


async def test_honest_answers_verify_with_full_quality() -> None:
    for challenge in await challenges(20):
        verdict = await TASK.verify(challenge.request, challenge.truth, await honest(challenge), VerifyTools())
        assert verdict.ok, verdict.reason
        assert verdict.quality == 1.0


async def test_a_cached_answer_earns_far_less_than_an_honest_one() -> None:
    drawn = await challenges(200, seed=2)
    cached = await honest(drawn[0])
    qualities = []
    for challenge in drawn[1:]:
        verdict = await TASK.verify(challenge.request, challenge.truth, cached, VerifyTools())
        qualities.append(verdict.quality if verdict.ok else 0.0)
    assert statistics.fmean(qualities) < 0.75


async def test_a_constant_answer_fails() -> None:
    drawn = await challenges(50, seed=3)
    constant = await honest(drawn[0])
    constant.update($constants)
    verdicts = [await TASK.verify(c.request, c.truth, constant, VerifyTools()) for c in drawn]
    assert statistics.fmean(v.quality if v.ok else 0.0 for v in verdicts) < 0.75


@pytest.mark.parametrize("answer", [None, "text", {}, {"id": "x", "created": 0, "model": MODEL}])
async def test_malformed_answers_fail_with_a_reason(answer: object) -> None:
    challenge = (await challenges(1))[0]
    verdict = await TASK.verify(challenge.request, challenge.truth, answer, VerifyTools())
    assert not verdict.ok and verdict.reason


async def test_an_answer_for_another_model_fails() -> None:
    challenge = (await challenges(1))[0]
    answer = {**(await honest(challenge)), "model": "another-model"}
    verdict = await TASK.verify(challenge.request, challenge.truth, answer, VerifyTools())
    assert not verdict.ok and "another-model" in (verdict.reason or "")


async def test_the_challenge_verifies_after_travelling_as_json() -> None:
    challenge = (await challenges(1))[0]
    request = challenge.request.model_dump(mode="json", exclude_unset=True)
    verdict = await TASK.verify_json(request, challenge.truth, await honest(challenge), VerifyTools())
    assert verdict.ok and verdict.quality == 1.0


async def test_the_handler_refuses_a_model_it_does_not_serve() -> None:
    challenge = (await challenges(1))[0]
    async with TASK.handler(HandlerTools(data_dir=Path("."))) as handler:
        with pytest.raises(NotFound):
            await handler.serve(challenge.request.model_copy(update={"model": "other"}))


def test_veilnet_finds_the_installed_task() -> None:
    installed_tasks.cache_clear()
    assert isinstance(installed_tasks()["$name"], ${prefix}Task)
'''

README = '''# $distribution

$summary — a [veilnet](https://github.com/veilnet) task: miners serve it, validators challenge and verify
it, the gateway serves it to apps on `$route`.

| | |
|---|---|
| inputs | $inputs_doc |
| outputs | $outputs_doc |
| verification | `$verification`: $verification_doc |
| model | `$name-v1` (`documents.MODEL`) |

## Files

- `src/$module/documents.py`: the request and answer documents (typed, strict).
- `src/$module/engine.py`: `solve` (the placeholder engine: replace it with your model) and the miner's handler.
- `src/$module/task.py`: the challenge generator (`random_request`) and the verifier.
- `tests/test_task.py`: honest answers verify; cached, constant and malformed answers do not.

## Use it

```sh
pip install -e .                     # registers the entry point veilnet.tasks: $name
python -m pytest                     # the task's own tests
veilnet devnet up --task $name       # a local subnet whose miners serve it and whose validators score it
curl -s $$GATEWAY$route -H "Authorization: Bearer $$KEY" -H 'Content-Type: application/json' \\
  -d '{"model": "$name-v1", $example}'
```

Replace `solve` with your model, keep its signature, and make `random_request` draw the inputs your
model will really see. With `known_truth` verification, build each challenge from an answer you chose
(so the validator knows it without running the model); with `reference` or `similarity`, the validator runs
`solve` itself on a sample of answers.
'''
