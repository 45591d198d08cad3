"""Framework adapters: ask signoff before a tool runs, in the shape each framework expects.

Each lives in its own module and imports its framework only there, so the base client
needs none of them:

- `signoff_client.adapters.langgraph`: gate a tool call inside a node, pause the graph
  with `interrupt()` while a human decides, resume it by interrupt id
  (``pip install "signoff-client[langgraph]"``).
- `signoff_client.adapters.callback`: a ``(tool_name, args) -> bool`` for engines that call
  back before each tool (no extra dependency).
- `signoff_client.adapters.openai_agents`: ``needs_approval=`` callables for the OpenAI
  Agents SDK and the resolver that settles paused calls through signoff
  (``pip install "signoff-client[openai-agents]"``).

All of them fail closed: an answer other than APPROVED, or any error, never lets a tool
run. docs/integration-python.md shows the few lines each needs.
"""

from __future__ import annotations

import hashlib

__all__ = ["stable_key"]


def stable_key(prefix: str, *parts: str) -> str:
    """A stable signoff tool_call_id for a framework's own ids (thread, tool call, ...).

    RequestDecision is idempotent by (instance_id, tool_call_id), so asking again with the
    same key (a re-run node, a resumed process) returns the same action instead of a new
    request. The key is a digest: always a valid id (printable ASCII, 128 at most)."""
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return f"{prefix}_{digest[:40]}"
