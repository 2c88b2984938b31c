"""``/api/v1/meta``: what this server does with questions and uploads, for any client."""

from __future__ import annotations

from typing import Literal

import msgspec
from litestar import Controller, get

from pdfqa.api.deps import CurrentUser, Deps

__all__ = ["Meta", "MetaController"]


class Meta(msgspec.Struct, frozen=True):
    answers: Literal["generated", "extractive"]
    """``generated``: a language model writes answers; ``extractive``: passages are quoted."""
    max_upload_bytes: int
    """The largest upload the server accepts."""


class MetaController(Controller):
    path = "/meta"
    tags = ["meta"]

    @get("/")
    async def show(self, resources: Deps, user: CurrentUser) -> Meta:
        """How answers are written here and the largest upload accepted."""
        return Meta(
            answers="extractive" if resources.chat is None else "generated",
            max_upload_bytes=resources.settings.max_upload_bytes,
        )
