"""The web interface: a few HTML pages and ES modules that use only the public JSON and SSE API.

Nothing here touches the database or the services: the pages are static files, and everything
a person sees comes from ``/api/v1`` through the browser's session cookie.
"""

from __future__ import annotations

from pdfqa.api.web.routes import static_files_router, web_router

__all__ = ["static_files_router", "web_router"]
