"""The Claude curator, through the anthropic SDK (DESIGN §5, issue 6; docs/claude.md).

Modules: ``prompt`` (the prompt text and the system blocks), ``schemas`` (the pydantic answer models and
the tools generated from them), ``client`` (one validated tool call: budget, retries, error mapping),
``curator`` (``ClaudeCurator`` and ``plan_dream``, the requests a dream sends first). What other modules
imported from ``dreaming.curators.claude`` before the split is re-exported here.
"""

from __future__ import annotations

from dreaming.curators.claude.client import (BUDGET_SAFETY, MIN_OUTPUT_TOKENS, Run, afford, call_tool,
                                             check_credentials, failure_from_status,
                                             is_transient_error, make_client, request_tokens, usage_of)
from dreaming.curators.claude.curator import ClaudeCurator, Plan, plan_dream, tool_request
from dreaming.curators.claude.prompt import (CACHE, SYSTEM_PROMPT, build_system, map_message, reduce_message,
                                             single_pass_message, store_block)
from dreaming.curators.claude.schemas import (OUTPUT_MODELS, TOOLS, ChangesetOutput, ChangeSpec, EvidenceRef,
                                              Finding, FindingsOutput, compact_schema, short_validation)

_request_tokens = request_tokens  # the names before the package split
_Run = Run

__all__ = [
    "BUDGET_SAFETY", "CACHE", "MIN_OUTPUT_TOKENS", "OUTPUT_MODELS", "SYSTEM_PROMPT", "TOOLS", "ChangeSpec",
    "ChangesetOutput", "ClaudeCurator", "EvidenceRef", "Finding", "FindingsOutput", "Plan", "Run", "afford",
    "build_system", "call_tool", "check_credentials", "compact_schema", "failure_from_status",
    "is_transient_error", "make_client", "map_message", "plan_dream", "reduce_message", "request_tokens",
    "short_validation", "single_pass_message", "store_block", "tool_request", "usage_of",
]
