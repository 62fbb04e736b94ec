FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    WIKIREF_DATA_DIR=/data

WORKDIR /app
# CPU-only torch first: a bare torch requirement would pull several GB of CUDA wheels.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md constraints.txt ./
COPY flows ./flows
COPY db ./db
COPY models ./models
RUN pip install -c constraints.txt .

RUN useradd --create-home --uid 1000 wikiref && mkdir -p /data && chown wikiref /data
USER wikiref
VOLUME ["/data"]
CMD ["wikiref", "serve"]
