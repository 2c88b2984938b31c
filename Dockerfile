# pdfqa image: the API (`pdfqa serve`) and the worker (`pdfqa worker`) run from the same image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PDFQA_DATA_DIR=/data PDFQA_HOST=0.0.0.0
# The CPU build of torch first: an unpinned torch would pull several GB of CUDA packages.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install "torch==2.13.0" --index-url "$TORCH_INDEX_URL"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .

RUN useradd --create-home --uid 1000 pdfqa && mkdir -p /data && chown pdfqa /data
USER pdfqa
VOLUME /data
EXPOSE 8000
CMD ["pdfqa", "serve"]
