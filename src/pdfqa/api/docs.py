"""The OpenAPI document, always at ``/api/docs/openapi.json``; the interactive docs (Swagger UI)
only with ``PDFQA_API_DOCS=true``, and then from assets vendored under ``/static/vendor``
(swagger-ui-dist 5.18.2, checksums in its ``VERSION`` file), never from a CDN on the origin that
holds the session cookie."""

from __future__ import annotations

from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin, SwaggerRenderPlugin

__all__ = ["docs_plugins"]

VENDOR = "/static/vendor/swagger-ui"


def docs_plugins(interactive: bool) -> list[OpenAPIRenderPlugin]:
    plugins: list[OpenAPIRenderPlugin] = [JsonRenderPlugin()]
    if interactive:
        plugins.insert(
            0,
            SwaggerRenderPlugin(
                js_url=f"{VENDOR}/swagger-ui-bundle.js",
                css_url=f"{VENDOR}/swagger-ui.css",
                standalone_preset_js_url=f"{VENDOR}/swagger-ui-standalone-preset.js",
                path="/",
                favicon="",
            ),
        )
    return plugins
