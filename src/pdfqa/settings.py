"""One typed settings object, loaded once from ``PDFQA_*`` environment variables at the edge.

Every field has a default that works for the embedded mode (``make run`` with no configuration).
Tests build :class:`Settings` directly instead of touching ``os.environ``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

__all__ = ["Settings", "csv", "load_settings"]

PREFIX = "PDFQA_"


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    """Configuration of the API process and the worker alike."""

    database_url: str = "postgresql://postgres@127.0.0.1:5432/pdfqa"
    """PostgreSQL DSN; the database is created when missing and migrated on start."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis DSN for the arq queue, progress pub/sub and caches."""
    qdrant_url: str | None = None
    """Qdrant server URL; unset: an embedded engine in this process (``embedded_vectors``)."""
    qdrant_api_key: str | None = None
    """API key for the Qdrant server, if it needs one."""
    embedded_vectors: Literal["edge", "local"] = "edge"
    """Embedded engine: ``edge`` (qdrant-edge, fast) or ``local`` (qdrant-client's local mode)."""
    data_dir: Path = Path("./data")
    """Holds uploaded files (``files/``), embedded vectors (``edge/``) and models (``models/``)."""
    host: str = "127.0.0.1"
    """Address ``pdfqa serve`` binds to."""
    port: int = 8000
    """Port ``pdfqa serve`` listens on."""
    embedded_worker: bool = True
    """Run an arq worker inside the API process (the embedded default)."""
    queue_name: str = "pdfqa:queue"
    """Start of the arq queue names (followed by the deployment's id and the queue kind)."""
    reconcile_interval_s: float = 15.0
    """How often each worker looks for unfinished uploads without a live job (and at start)."""
    ingest_max_attempts: int = 3
    """Attempts at one upload's ingestion (crashes, lost jobs, transient errors) before it fails."""
    shutdown_timeout_s: float = 20.0
    """On SIGTERM: time for running jobs and requests to finish (uvicorn's graceful timeout)."""
    worker_give_up_s: float = 120.0
    """A separate worker that cannot reach Redis for this long exits with status 1."""
    max_streams_per_user: int = 32
    """Progress streams one user may hold open at once (429 beyond)."""
    sse_heartbeat_s: float = 15.0
    """A quiet event stream gets a keep-alive comment line this often (for proxies' idle limits)."""
    db_pool_size: int = 20
    """Most PostgreSQL connections one process holds."""
    db_acquire_timeout_s: float = 5.0
    """Longest wait for a free database connection before answering 503."""
    db_command_timeout_s: float = 30.0
    """Client-side limit on one database statement (asyncpg ``command_timeout``)."""
    db_statement_timeout_s: float = 30.0
    """Server-side limit on one database statement (PostgreSQL ``statement_timeout``)."""

    embedding_provider: Literal["local", "openai"] = "local"
    """``local``: the bundled all-MiniLM-L6-v2; ``openai``: an OpenAI-compatible /embeddings API."""
    local_embedding_backend: Literal["onnx-int8", "onnx", "torch"] = "onnx-int8"
    """How the local model runs: int8 ONNX (fastest), float ONNX, or PyTorch."""
    embedding_model: str = "text-embedding-3-small"
    """Model name sent to the OpenAI-compatible endpoint (provider ``openai``)."""
    embedding_dimensions: int | None = None
    """Vector size of the remote model; probed with one request when unset."""
    openai_base_url: str | None = None
    """Base URL of the OpenAI-compatible endpoint (Ollama: ``http://localhost:11434/v1``)."""
    openai_api_key: str = "not-needed"
    """API key for the OpenAI-compatible endpoint."""
    chat_model: str | None = None
    """Model that writes answers (e.g. ``gpt-4o-mini``, ``llama3.1``); unset: extractive answers."""
    chat_base_url: str | None = None
    """Base URL of the chat endpoint; unset: ``openai_base_url``."""
    chat_api_key: str | None = None
    """API key of the chat endpoint; unset: ``openai_api_key``."""
    chat_context_tokens: int = 2048
    """Word pieces of source text a language model gets in all: the best sources' contexts while
    they fit, the matching passages alone after (sized for a 4,096-token local model)."""
    chat_max_tokens: int = 800
    """Longest answer the model may write, in tokens."""
    chat_temperature: float = 0.1
    """Sampling temperature of answers."""
    chat_timeout_s: float = 60.0
    """Timeout of one request to the chat endpoint."""
    chat_max_retries: int = 2
    """Retries of a chat request that fails before streaming starts (429, 5xx, timeouts)."""
    embed_batch_size: int = 32
    """Chunks per embedding request or model call."""
    embed_concurrency: int = 4
    """Embedding batches in flight at once against a remote endpoint."""
    inference_threads: int = 0
    """Threads the local model may use; 0 means one per CPU core."""

    chunk_tokens: int = 200
    """Target chunk size in word pieces (all-MiniLM-L6-v2 reads at most 256)."""
    chunk_overlap_tokens: int = 32
    """Word pieces repeated from the end of one chunk at the start of the next."""

    extract_tables: bool = True
    """Render ruled tables as labelled rows with pdfplumber (slower; better for 10-K tables)."""
    retrieval_top_k: int = 6
    """Passages retrieved for each question (and shown as sources)."""
    retrieval_prefetch: int = 40
    """Candidates each of the dense and the sparse search contributes before fusion."""
    context_tokens: int = 512
    """Word pieces of text the reader gets for each source: the passage and its neighbours on the
    same page (0: the passage alone)."""
    dense_weight: float = 1.0
    """Weight of the dense (semantic) ranking in reciprocal-rank fusion."""
    sparse_weight: float = 1.5
    """Weight of the sparse (BM25, exact terms) ranking in reciprocal-rank fusion (1.5: chosen
    on mmlongbench-dev and the eval's own questions; see the README's retrieval figures)."""
    rerank_model: str | None = None
    """Cross-encoder that re-orders the fused candidates (e.g. ``BAAI/bge-reranker-v2-m3``) behind
    a Jina/Cohere-style ``POST /rerank``; unset (the default): the fused order stands."""
    rerank_base_url: str | None = None
    """Base URL of the rerank endpoint (``<base>/rerank``); unset: ``openai_base_url``."""
    rerank_api_key: str | None = None
    """API key of the rerank endpoint; unset: ``openai_api_key``."""
    rerank_candidates: int = 30
    """Passages the reranker scores for each question (the best of the fused ranking)."""
    rerank_timeout_s: float = 10.0
    """Timeout of one rerank request; past it (or on any error) the fused order stands."""
    min_confidence: float = 0.166
    """Below this retrieval confidence (0-1), the answer says "not found" (sources still shown).

    Chosen on mmlongbench-dev (``make eval``): the highest threshold that declines at most 5% of
    the answerable questions."""
    max_upload_bytes: int = 100 * 1024 * 1024
    """Largest accepted upload, in bytes."""
    max_pages: int = 5000
    """PDFs with more pages fail with "too many pages"."""
    page_timeout_s: float = 30.0
    """Wall-clock limit for extracting one page before its child process is killed."""
    extract_memory_mb: int = 1536
    """Address-space limit of each extraction child process."""
    extract_cpu_s: int = 1800
    """CPU-seconds limit of each extraction child process (the whole document)."""
    ocr: bool = True
    """Read scanned and image-only pages with OCR (rapidocr, offline), on the ``ocr`` queue."""
    ocr_min_chars_per_sq_in: float = 0.25
    """A page holding an image and fewer characters than this per square inch (counted up to a
    Letter page: 23) goes to OCR; pages without text or with garbage text always do."""
    ocr_scale: float = 2.0
    """Resolution OCR renders pages at, as a scale of 72 dpi (2: 144 dpi; at most 2000 px)."""
    ocr_language: str = "en"
    """OCR language: any the bundled PP-OCRv6 model reads (see the README) works offline."""
    ocr_version: str = "PP-OCRv6"
    """PP-OCR generation of the OCR models (``PP-OCRv5`` for rapidocr's per-language ones)."""
    ocr_det_model: Path | None = None
    """Another text detection model (ONNX file); unset: the bundled one."""
    ocr_rec_model: Path | None = None
    """A recognition model (ONNX file) for a language the bundled one does not read."""
    ocr_rec_keys: Path | None = None
    """The dictionary file of ``ocr_rec_model``, if it does not carry its own."""
    ocr_page_timeout_s: float = 180.0
    """Wall-clock limit for OCR of one page before its child process is killed."""
    ocr_page_cpu_s: int = 120
    """CPU-seconds limit for OCR of one page."""
    ocr_memory_mb: int = 3072
    """Address-space limit of each OCR child process (onnxruntime and the models need ~1 GB)."""
    ocr_nice: int = 10
    """Nice value added to OCR child processes, so text PDFs keep the CPU during a scan."""
    ocr_idle_priority: bool = True
    """Run OCR children at Linux's idle scheduling class (``SCHED_IDLE``): a scan only gets the
    CPU time no text PDF (or anything else) wants, and its page time limit counts only the time
    it was given. False: ``ocr_nice`` alone."""
    ocr_threads: int = 0
    """onnxruntime threads per OCR child; 0: one per CPU core."""
    ocr_concurrency: int = 1
    """OCR jobs one worker runs at once."""
    ocr_job_timeout_s: int = 24 * 3600
    """Hard limit for one upload's OCR job (a 5,000-page scan takes hours)."""
    worker_concurrency: int = 2
    """Jobs one worker runs at once (arq ``max_jobs``)."""
    job_timeout_s: int = 3600
    """Hard limit for one ingestion job."""
    session_ttl_s: int = 14 * 24 * 3600
    """How long a login token stays valid."""
    session_idle_s: int = 24 * 3600
    """A session unused for this long ends (idle timeout)."""
    scrypt_log_n: int = 17
    """Password hashing cost: scrypt N = 2**this, r=8, p=1 (17 is OWASP's minimum)."""
    login_attempts: int = 5
    """Failed logins for one account from one client address before it must wait."""
    login_window_s: int = 900
    """Window of ``login_attempts``; a lock-out ends when it does."""
    auth_rate_per_minute: int = 30
    """Requests to ``/api/v1/auth/*`` one client address may make per minute."""
    registration: Literal["open", "closed"] = "open"
    """Self-registration: ``open``, or ``closed`` (only an admin creates accounts)."""
    registration_domains: str = ""
    """Comma-separated e-mail domains allowed to self-register; empty: any domain."""
    admin_emails: str = ""
    """Comma-separated e-mail addresses of admins (they may create users)."""
    cookie_secure: Literal["auto", "always", "never"] = "auto"
    """``Secure`` + ``__Host-`` session cookie: ``auto`` when served over HTTPS or not localhost."""
    trusted_origins: str = ""
    """Comma-separated extra origins (``https://host``) allowed to send unsafe requests."""
    allowed_hosts: str = ""
    """Comma-separated host names the app answers to (``*.example.com`` allowed); empty: any."""
    api_docs: bool = False
    """Serve the interactive API docs at ``/api/docs`` (vendored assets); the schema always is."""
    body_idle_timeout_s: float = 30.0
    """A request body that sends nothing for this long is answered ``408``."""
    max_storage_bytes: int = 5 * 1024**3
    """Total size of one user's uploads; 0: unlimited."""
    uploads_per_hour: int = 100
    """Uploads one user may make per hour; 0: unlimited."""
    questions_per_minute: int = 20
    """Questions one user may ask per minute; 0: unlimited."""
    log_level: str = "INFO"
    """Python logging level."""
    log_format: Literal["auto", "json", "text"] = "auto"
    """``auto``: JSON lines when stderr is not a terminal, readable text on a terminal."""
    otlp_endpoint: str | None = None
    """OTLP/HTTP collector (``http://jaeger:4318``): traces are exported there. Unset: off."""
    trace_console: bool = False
    """Print finished spans to stdout (local debugging)."""
    service_name: str | None = None
    """``service.name`` of this process's spans; unset: ``pdfqa-api`` or ``pdfqa-worker``."""
    worker_metrics_port: int = 0
    """``pdfqa worker`` serves its Prometheus metrics on this port; 0: not served."""
    file_store: Literal["local", "s3"] = "local"
    """Where uploaded files live: ``local`` (``data_dir/files``) or an S3-compatible bucket."""
    s3_bucket: str = "pdfqa"
    """Bucket of the ``s3`` file store (created when missing)."""
    s3_endpoint_url: str | None = None
    """S3-compatible endpoint (MinIO: ``http://minio:9000``); unset: AWS."""
    s3_region: str = "us-east-1"
    """Region of the bucket."""
    s3_access_key_id: str | None = None
    """Access key; unset: the usual AWS credential chain."""
    s3_secret_access_key: str | None = None
    """Secret key; unset: the usual AWS credential chain."""
    s3_prefix: str = "files/"
    """Key prefix of uploaded files inside the bucket."""
    retrieval_cache_ttl_s: int = 600
    """How long a question's retrieved passages stay cached in Redis; 0: no cache."""
    failed_file_retention_s: int = 7 * 24 * 3600
    """How long a failed upload's file is kept, so an admin can retry its ingestion; 0: deleted
    at once. The reconciler deletes expired files (they do not count toward storage quotas)."""


def csv(value: str) -> list[str]:
    """The items of a comma-separated setting, stripped, without empty ones."""
    return [item.strip() for item in value.split(",") if item.strip()]


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from ``PDFQA_*`` variables; unknown ``PDFQA_`` names are an error."""
    fields = set(Settings.__struct_fields__)
    raw: dict[str, str] = {}
    for key, value in environ.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :].lower()
        if name not in fields:
            raise ValueError(f"unknown setting {key}")
        raw[name] = value
    return msgspec.convert(raw, Settings, strict=False, dec_hook=_decode_path)


def _decode_path(type_: type, value: object) -> object:
    if type_ is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"cannot read {type_!r} from the environment")
