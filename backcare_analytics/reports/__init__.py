"""Reports: notebook templates executed in warm kernels and exported to self-contained HTML and
PDF (``render``), formatting for people (``tables``), the week's data computed once per process
(``context``), and the pieces the templates show (``weekly``, ``overview``)."""

from __future__ import annotations

__all__: list[str] = []
