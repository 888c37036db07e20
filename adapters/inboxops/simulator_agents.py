"""The simulator's agents: who a ticket may be assigned to.

InboxOps documents no agent or user endpoint, and does not say whether an
``assignee_id`` that is no agent of the workspace is refused. The simulator plays both
readings (behaviour ``assignees``): ``any`` (the default) takes any UUID, as it always
has; ``agents`` takes only the workspace's agents and answers any other id with 400
``bad_request`` on ``assignee_id``. Control routes (no auth):

    POST /_sim/agents   {"name", "email"?, "id"?: uuid} -> 201 {"data": agent}
    GET  /_sim/agents   {"data": [agent, ...]} (by name): the list an admin copies
                        from Settings -> Team to fill the identity map
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from msgspec import UNSET, UnsetType

from adapters._simbase import json_response
from adapters._simkit import Behaviour
from adapters.inboxops.simulator_rules import Invalid, Text, _decode

ASSIGNEES = Behaviour(
    choices=("any", "agents"),
    doc="whether an assignee_id must be an agent of the workspace (undocumented)",
)

#: The workspace's agents at start: (id, name, email).
AGENTS = (
    ("7a1d3c2e-5b6f-4e8a-9c0d-1e2f3a4b5c61", "Ada Agent", "ada@example.com"),
    ("7a1d3c2e-5b6f-4e8a-9c0d-1e2f3a4b5c62", "Bo Agent", "bo@example.com"),
)


class AgentIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Text
    email: Text | UnsetType = UNSET
    id: uuid.UUID | UnsetType = UNSET


class Agents:
    """The workspace's agents, by id."""

    def __init__(self) -> None:
        self.by_id: dict[str, dict[str, Any]] = {
            agent_id: {"id": agent_id, "name": name, "email": email}
            for agent_id, name, email in AGENTS
        }

    def check(self, assignee_id: str | None, reading: str) -> None:
        """Refuse an assignee that is no agent, under the ``agents`` reading."""
        if assignee_id is not None and reading == "agents" and assignee_id not in self.by_id:
            raise Invalid(f"assignee_id: {assignee_id} is not an agent of this workspace")

    def control_routes(
        self, guarded: Callable[[Callable[[], Response[bytes]]], Response[bytes]]
    ) -> list[Any]:
        agents = self

        def add(raw: bytes) -> Response[bytes]:
            body = _decode(raw, AgentIn)
            agent_id = str(uuid.uuid4()) if isinstance(body.id, UnsetType) else str(body.id)
            agent: dict[str, Any] = {"id": agent_id, "name": body.name}
            if not isinstance(body.email, UnsetType):
                agent["email"] = body.email
            agents.by_id[agent_id] = agent
            return json_response({"data": agent}, 201)

        @post("/_sim/agents")
        async def add_agent(request: Request[Any, Any, Any]) -> Response[bytes]:
            raw = await request.body()
            return guarded(lambda: add(raw))

        @get("/_sim/agents", sync_to_thread=False)
        def list_agents() -> Response[bytes]:
            ordered = sorted(agents.by_id.values(), key=lambda a: (a["name"], a["id"]))
            return json_response({"data": ordered})

        return [add_agent, list_agents]
