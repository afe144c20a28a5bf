"""Curators: ``get_curator(name)`` returns one that implements ``Curator.curate(CurationInput)``.

'rules' is the offline deterministic default; 'claude' is imported lazily (it needs the anthropic
SDK and credentials only when used).
"""

from __future__ import annotations

import importlib

from dreaming.curators.base import CurationInput, CurationResult, Curator
from dreaming.errors import BadInput

CURATORS: dict[str, str] = {
    "rules": "dreaming.curators.rules:RulesCurator",
    "claude": "dreaming.curators.claude:ClaudeCurator",
}


def get_curator(name: str, **kwargs) -> Curator:
    """A curator instance by name ('rules' | 'claude'); ``kwargs`` go to its constructor."""
    target = CURATORS.get(name)
    if target is None:
        raise BadInput(f"unknown curator {name!r}; choose one of {', '.join(sorted(CURATORS))}", field="curator")
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


__all__ = ["CURATORS", "CurationInput", "CurationResult", "Curator", "get_curator"]
