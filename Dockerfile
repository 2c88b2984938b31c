# pdfqa image: the API (`pdfqa serve`) and the worker (`pdfqa worker`) run from the same image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PDFQA_DATA_DIR=/data PDFQA_HOST=0.0.0.0
# Every dependency from the lock file, hash-checked; torch is locked at its CPU build
# (2.13.0+cpu), which comes from PyTorch's CPU index (an unpinned torch would pull several GB of
# CUDA packages).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /app
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps --extra-index-url "$TORCH_INDEX_URL" -r requirements.lock

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-deps .

RUN useradd --create-home --uid 1000 pdfqa && mkdir -p /data && chown pdfqa /data
USER pdfqa
VOLUME /data
EXPOSE 8000
CMD ["pdfqa", "serve"]
