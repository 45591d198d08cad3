"""The framework adapters (signoff_client.adapters) against real signoff server processes.

LangGraph graphs, the callback and OpenAI Agents runs ask signoff before a tool runs; another
client (a plain grpcio stub, as an approver's tool would) decides. The tools record every
execution, so each test proves a tool ran once with the approved params, or never; the
approval's single-use grant is what makes "once" hold across re-runs and resumers.
"""

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, TypedDict

import agents
import pytest
from agents import Agent, Runner, RunState, function_tool
from agents.testing import ScriptedModel, assistant_message, function_call
from agents.tool_context import ToolContext
from google.protobuf import struct_pb2
from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import Command

from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from signoff_client import (
    APPROVED,
    ActionRejected,
    AsyncSignoff,
    Backoff,
    DecisionTimeout,
    ErrorReason,
    InstanceTerminated,
    Signoff,
    SignoffError,
)
from signoff_client.adapters.callback import signoff_callback
from signoff_client.adapters.langgraph import (
    agate_tool_call,
    approval_key,
    aresume_command,
    gate_tool_call,
    pauses,
    resume_command,
    tool_call_wrapper,
)
from signoff_client.adapters.openai_agents import SignoffApprovals
from signoff_client.betterproto.google.protobuf import Struct
from signoff_client.betterproto.signoff import v1 as bp
from tests import support
from tests.support import ServerProcess, Stubs, envelope

PATIENCE = 60.0  # seconds a test waits for the server or a process before it fails
FAST = Backoff(initial=0.05, maximum=0.5)
REFUND = {"order_id": "ord_881", "amount": 4200, "currency": "INR"}
REFUND_TOOL = "adp_payments.issue_refund"
APPROVER = "user_finance_lead_77"

agents.set_tracing_disabled(True)  # offline: no trace export


# ---- helpers, shared with test_agent_proxy -----------------------------------------------


def pending_actions(stubs: Stubs, instance_id: str) -> list[pb.Action]:
    page = stubs.as_(APPROVER).approval.ListPendingApprovals(
        approval_pb.ListPendingApprovalsRequest(page_size=1000), timeout=PATIENCE
    )
    return [action for action in page.actions if action.instance_id == instance_id]


def waiting_action(stubs: Stubs, instance_id: str) -> pb.Action:
    """The one action that waits on an instance, once its RequestDecision committed."""
    deadline = time.monotonic() + PATIENCE
    while not (found := pending_actions(stubs, instance_id)):
        assert time.monotonic() < deadline, "no action ever waited"
        time.sleep(0.05)
    assert len(found) == 1, found
    return found[0]


def decide(stubs: Stubs, action_id: str, verdict: int, reason: str = "checked") -> None:
    support.decide(stubs, action_id, APPROVER, verdict, reason, timeout=PATIENCE)


def events(stubs: Stubs, instance_id: str) -> list[pb.Event]:
    """Every event of a finished instance (the stream ends after the terminal event)."""
    stream = stubs.execution.WatchInstance(
        execution_pb.WatchInstanceRequest(instance_id=instance_id), timeout=PATIENCE
    )
    return list(support.events(stream))


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Signoff]:
    with Signoff.connect(server.target, backoff=FAST) as signoff:
        yield signoff


# ---- LangGraph ---------------------------------------------------------------------------


class GraphState(TypedDict, total=False):
    instance_id: str
    call: dict[str, Any]
    outcome: str


def refund_graph(gate: Any) -> Any:
    """START -> refund -> END; the refund node gates one tool call."""
    graph = StateGraph(GraphState)
    graph.add_node("refund", gate)
    graph.add_edge(START, "refund")
    graph.add_edge("refund", END)
    return graph.compile(checkpointer=InMemorySaver())


def langgraph_refund(
    client: Signoff, executed: list[dict[str, Any]]
) -> Callable[[GraphState, RunnableConfig], GraphState]:
    def refund(state: GraphState, config: RunnableConfig) -> GraphState:
        try:
            decision = gate_tool_call(
                client,
                state["instance_id"],
                state["call"],
                tool=REFUND_TOOL,
                risk_class="DESTRUCTIVE",
                config=config,
            )
        except (ActionRejected, InstanceTerminated) as no:
            return {"outcome": f"not executed: {no.reason}"}
        if decision.consumed:  # executed and reported by an earlier run of this node
            return {"outcome": "already executed"}
        assert decision.params is not None
        executed.append(decision.params)
        client.report_execution(
            decision.action_id, True, "tool:refund", grant_token=decision.grant_token
        )
        return {"outcome": "executed"}

    return refund


def test_langgraph_pauses_then_resumes_by_interrupt_id(
    server: ServerProcess, client: Signoff
) -> None:
    stubs, executed = server.stubs(), list[dict[str, Any]]()
    graph = refund_graph(langgraph_refund(client, executed))
    instance = client.invoke_agent(envelope())
    config: RunnableConfig = {"configurable": {"thread_id": f"thread_{uuid.uuid4().hex}"}}
    call = {"id": "call_refund_1", "name": "issue_refund", "args": REFUND}

    result = graph.invoke({"instance_id": instance.instance_id, "call": call}, config)
    assert "__interrupt__" in result and not executed
    paused = pauses(graph.get_state(config).interrupts)
    assert len(paused) == 1
    action = waiting_action(stubs, instance.instance_id)
    assert paused[0].action_id == action.action_id
    key = approval_key(config["configurable"]["thread_id"], "call_refund_1")
    assert action.tool_call_id == key == paused[0].tool_call_id

    # A forged or early resume re-runs the node: it asks again under the same key (no second
    # request) and, since signoff still waits, pauses again. The resume value is not trusted.
    graph.invoke(Command(resume={paused[0].interrupt_id: APPROVED}), config)
    assert not executed
    pending = [a.action_id for a in pending_actions(stubs, instance.instance_id)]
    assert pending == [action.action_id]
    assert client.get_instance(instance.instance_id).tool_calls_used == 1
    with pytest.raises(DecisionTimeout):
        resume_command(client, graph.get_state(config).interrupts, timeout=0.3)

    decide(stubs, action.action_id, pb.VERDICT_APPROVE)
    command = resume_command(client, graph.get_state(config).interrupts, timeout=PATIENCE)
    assert command is not None
    result = graph.invoke(command, config)
    assert result["outcome"] == "executed" and executed == [REFUND]
    # Finished: nothing to resume, and nothing runs twice.
    assert resume_command(client, graph.get_state(config).interrupts) is None
    # As if the process died after the report, before the checkpoint: the node runs again
    # on the same thread, gets the same action, sees it consumed, and does not execute.
    again = refund_graph(langgraph_refund(client, executed))
    result = again.invoke({"instance_id": instance.instance_id, "call": call}, config)
    assert result["outcome"] == "already executed"
    assert executed == [REFUND]


def test_langgraph_rejection_never_runs_the_tool(server: ServerProcess, client: Signoff) -> None:
    stubs, executed = server.stubs(), list[dict[str, Any]]()
    graph = refund_graph(langgraph_refund(client, executed))
    instance = client.invoke_agent(envelope())
    config: RunnableConfig = {"configurable": {"thread_id": f"thread_{uuid.uuid4().hex}"}}
    call = {"id": "call_refund_1", "name": "issue_refund", "args": REFUND}
    graph.invoke({"instance_id": instance.instance_id, "call": call}, config)
    decide(stubs, waiting_action(stubs, instance.instance_id).action_id, pb.VERDICT_REJECT, "no")
    interrupts = graph.get_state(config).interrupts
    command = resume_command(client, interrupts, timeout=PATIENCE)
    assert command is not None and command.resume == {interrupts[0].id: "REJECTED"}
    assert graph.invoke(command, config)["outcome"] == "not executed: no"
    assert executed == []


def test_langgraph_keys_are_per_thread(server: ServerProcess, client: Signoff) -> None:
    """One instance, two threads, the same model tool_call_id: two requests, not one."""
    executed: list[dict[str, Any]] = []
    graph = refund_graph(langgraph_refund(client, executed))
    instance = client.invoke_agent(envelope())
    call = {"id": "call_refund_1", "name": "issue_refund", "args": REFUND}
    for thread in ("thread_a", "thread_b"):
        config: RunnableConfig = {"configurable": {"thread_id": f"{thread}_{uuid.uuid4().hex}"}}
        graph.invoke({"instance_id": instance.instance_id, "call": call}, config)
    assert len(pending_actions(server.stubs(), instance.instance_id)) == 2
    assert approval_key("t", "c") == approval_key("t", "c") != approval_key("t2", "c")
    assert not executed


async def test_langgraph_async_gate(server: ServerProcess) -> None:
    stubs, executed = server.stubs(), list[dict[str, Any]]()
    async with AsyncSignoff.connect(server.target, backoff=FAST) as signoff:

        async def refund(state: GraphState, config: RunnableConfig) -> GraphState:
            decision = await agate_tool_call(
                signoff,
                state["instance_id"],
                state["call"],
                tool=REFUND_TOOL,
                risk_class="DESTRUCTIVE",
                config=config,
            )
            if decision.consumed:
                return {"outcome": "already executed"}
            assert decision.params is not None
            # Spend the grant before running: at most once, even if the tool crashes.
            await signoff.consume_grant(decision.action_id, decision.grant_token)
            executed.append(decision.params)
            await signoff.report_execution(decision.action_id, True, "tool:refund")
            return {"outcome": "executed"}

        graph = refund_graph(refund)
        instance = await signoff.invoke_agent(envelope())
        config: RunnableConfig = {"configurable": {"thread_id": f"thread_{uuid.uuid4().hex}"}}
        call = {"id": "call_1", "name": "issue_refund", "args": REFUND}
        await graph.ainvoke({"instance_id": instance.instance_id, "call": call}, config)
        assert not executed
        action = waiting_action(stubs, instance.instance_id)
        decide(stubs, action.action_id, pb.VERDICT_APPROVE)
        snapshot = await graph.aget_state(config)
        command = await aresume_command(signoff, snapshot.interrupts, timeout=PATIENCE)
        assert command is not None
        assert (await graph.ainvoke(command, config))["outcome"] == "executed"
        # The node run again on the same thread finds the grant spent.
        again = refund_graph(refund)
        result = await again.ainvoke({"instance_id": instance.instance_id, "call": call}, config)
        assert result["outcome"] == "already executed"
    assert executed == [REFUND]


def approve_with_edit(stubs: Stubs, action_id: str, params: dict[str, Any]) -> None:
    edited = struct_pb2.Struct()
    edited.update(params)
    support.decide(
        stubs,
        action_id,
        APPROVER,
        pb.VERDICT_APPROVE,
        "net of the voucher",
        edited_params=edited,
        timeout=PATIENCE,
    )


def action_events(stubs: Stubs, instance_id: str, action_id: str) -> list[pb.Event]:
    return [e for e in list_events(stubs, instance_id) if e.action_id == action_id]


class ToolState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    instance_id: str


def tool_graph(client: Signoff, executed: list[dict[str, Any]], checkpointer: InMemorySaver) -> Any:
    """START -> ToolNode(wrap_tool_call=tool_call_wrapper(...)) -> END."""

    @tool
    def issue_refund(order_id: str, amount: int, currency: str) -> str:
        """Refunds an order."""
        executed.append({"order_id": order_id, "amount": amount, "currency": currency})
        return f"refunded {amount}"

    node = ToolNode(
        [issue_refund],
        wrap_tool_call=tool_call_wrapper(client, {"issue_refund": "DESTRUCTIVE"}),
    )
    graph = StateGraph(ToolState)
    graph.add_node("tools", node)
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    return graph.compile(checkpointer=checkpointer)


def refund_request(instance_id: str, call_id: str = "call_refund_1") -> ToolState:
    call = {"id": call_id, "name": "issue_refund", "args": REFUND, "type": "tool_call"}
    return {"messages": [AIMessage(content="", tool_calls=[call])], "instance_id": instance_id}


def tool_answer(result: dict[str, Any]) -> ToolMessage:
    answer = result["messages"][-1]
    assert isinstance(answer, ToolMessage)
    return answer


def test_langgraph_tool_node_runs_what_signoff_approved(
    server: ServerProcess, client: Signoff
) -> None:
    stubs, executed, saver = server.stubs(), list[dict[str, Any]](), InMemorySaver()
    graph = tool_graph(client, executed, saver)
    instance = client.invoke_agent(envelope())
    config: RunnableConfig = {"configurable": {"thread_id": f"thread_{uuid.uuid4().hex}"}}
    result = graph.invoke(refund_request(instance.instance_id), config)
    assert "__interrupt__" in result and not executed
    action = waiting_action(stubs, instance.instance_id)
    assert action.tool == "agent.issue_refund"
    # The approver lowers the amount: the tool runs with the approved params, once.
    approve_with_edit(stubs, action.action_id, {**REFUND, "amount": 3000})
    command = resume_command(client, graph.get_state(config).interrupts, timeout=PATIENCE)
    answer = tool_answer(graph.invoke(command, config))
    assert answer.content == "refunded 3000" and answer.status == "success"
    assert executed == [{**REFUND, "amount": 3000}]
    states = [e.action_state for e in action_events(stubs, instance.instance_id, action.action_id)]
    assert states[-2:] == [pb.ACTION_STATE_EXECUTING, pb.ACTION_STATE_EXECUTED]

    # Rejected: the model is told, the tool does not run.
    config = {"configurable": {"thread_id": f"thread_{uuid.uuid4().hex}"}}
    graph.invoke(refund_request(instance.instance_id, "call_refund_2"), config)
    decide(stubs, waiting_action(stubs, instance.instance_id).action_id, pb.VERDICT_REJECT, "no")
    command = resume_command(client, graph.get_state(config).interrupts, timeout=PATIENCE)
    answer = tool_answer(graph.invoke(command, config))
    assert answer.status == "error" and "signoff did not allow this call" in str(answer.content)
    assert len(executed) == 1


def test_langgraph_concurrent_resumers_run_the_tool_once(
    server: ServerProcess, client: Signoff
) -> None:
    """Resumers of one interrupt racing (retried jobs, two workers): one runs the tool, the
    others hear "already executed"; none fails on a grant another resumer replaced."""
    stubs, executed, saver = server.stubs(), list[dict[str, Any]](), InMemorySaver()
    instance = client.invoke_agent(envelope())
    config: RunnableConfig = {"configurable": {"thread_id": f"thread_{uuid.uuid4().hex}"}}
    tool_graph(client, executed, saver).invoke(refund_request(instance.instance_id), config)
    decide(stubs, waiting_action(stubs, instance.instance_id).action_id, pb.VERDICT_APPROVE)
    interrupts = tool_graph(client, executed, saver).get_state(config).interrupts
    command = resume_command(client, interrupts, timeout=PATIENCE)
    resumers = 4
    start = threading.Barrier(resumers)

    def resume() -> ToolMessage:
        with Signoff.connect(server.target, backoff=FAST) as own:
            graph = tool_graph(own, executed, saver)  # each resumer: its own client and graph
            start.wait(PATIENCE)
            return tool_answer(graph.invoke(command, config))

    with ThreadPoolExecutor(resumers) as pool:
        answers = [f.result(PATIENCE) for f in [pool.submit(resume) for _ in range(resumers)]]
    assert executed == [REFUND]
    contents = [str(a.content) for a in answers]
    assert contents.count("refunded 4200") == 1, contents
    assert sum("already executed" in c for c in contents) == resumers - 1, contents


# ---- callback ----------------------------------------------------------------------------


RISKS = {"issue_refund": "DESTRUCTIVE", "lookup_order": "READ_ONLY"}


def test_callback_allows_read_only_at_once_and_waits_for_a_human(
    server: ServerProcess, client: Signoff
) -> None:
    stubs = server.stubs()
    instance = client.invoke_agent(envelope())
    allow = signoff_callback(client, instance.instance_id, RISKS, timeout=PATIENCE)
    assert allow("lookup_order", {"order_id": "ord_881"}) is True
    assert allow.approved[-1].action is not None
    assert allow.approved[-1].action.tool == "agent.lookup_order"
    # True means "run it now": the callback spent the grant, the action is EXECUTING.
    with pytest.raises(SignoffError) as spent:
        client.consume_grant(allow.approved[-1].action_id, allow.approved[-1].grant_token)
    assert spent.value.reason == "ALREADY_EXECUTED"
    with ThreadPoolExecutor(1) as pool:
        asking = pool.submit(allow, "issue_refund", REFUND)
        action = waiting_action(stubs, instance.instance_id)
        assert action.tool == "agent.issue_refund"
        assert action.risk_class == pb.RISK_CLASS_DESTRUCTIVE
        assert not asking.done()
        decide(stubs, action.action_id, pb.VERDICT_APPROVE)
        assert asking.result(PATIENCE) is True
    assert [d.params for d in allow.approved] == [{"order_id": "ord_881"}, REFUND]

    with ThreadPoolExecutor(1) as pool:
        asking = pool.submit(allow, "issue_refund", {**REFUND, "amount": 10})
        decide(stubs, waiting_action(stubs, instance.instance_id).action_id, pb.VERDICT_REJECT)
        assert asking.result(PATIENCE) is False

    # A tool it does not know is asked as DESTRUCTIVE: nobody decides in time, so False.
    assert signoff_callback(client, instance.instance_id, RISKS, timeout=0.3)("wipe", {}) is False
    assert waiting_action(stubs, instance.instance_id).tool == "agent.wipe"

    with ThreadPoolExecutor(1) as pool:  # "wipe" still waits; cancel while a refund waits too
        asking = pool.submit(allow, "issue_refund", REFUND)
        deadline = time.monotonic() + PATIENCE
        while len(pending_actions(stubs, instance.instance_id)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        client.cancel_instance(instance.instance_id, "customer withdrew")
        assert asking.result(PATIENCE) is False
    assert len(allow.approved) == 2


def test_callback_fails_closed_on_errors(server: ServerProcess, client: Signoff) -> None:
    instance = client.invoke_agent(envelope())
    allow = signoff_callback(client, instance.instance_id, RISKS, timeout=PATIENCE)
    assert allow("bad name", {}) is False  # INVALID_ARGUMENT: not a tool name
    assert allow("lookup_order", {"when": object()}) is False  # not JSON
    assert signoff_callback(client, "ins_missing", RISKS)("lookup_order", {}) is False
    with Signoff.connect(closed_port()) as nowhere:
        unreachable = signoff_callback(nowhere, instance.instance_id, RISKS, timeout=5)
        assert unreachable("lookup_order", {}) is False
    # A stable key (the engine's own call id) repeats the request instead of a new one:
    # an allowed action is never allowed again, reported or not (its grant is spent).
    keyed = signoff_callback(client, instance.instance_id, RISKS, key=lambda name, args: "tc_1")
    assert keyed("lookup_order", {"order_id": "ord_881"}) is True
    assert keyed("lookup_order", {"order_id": "ord_881"}) is False  # not reported yet
    reported = client.report_execution(keyed.approved[0].action_id, True, "tool:lookup")
    assert reported.state == pb.ACTION_STATE_EXECUTED  # no token needed: it was consumed
    assert keyed("lookup_order", {"order_id": "ord_881"}) is False
    assert len(keyed.approved) == 1
    assert not allow.approved


# ---- OpenAI Agents SDK -------------------------------------------------------------------


def openai_agent(
    approvals: SignoffApprovals, model: ScriptedModel, executed: list[dict[str, Any]]
) -> Agent[Any]:
    @function_tool(
        needs_approval=approvals.needs_approval(
            "issue_refund", tool=REFUND_TOOL, risk_class="DESTRUCTIVE"
        )
    )
    async def issue_refund(ctx: ToolContext[Any], order_id: str, amount: int) -> str:
        """Refunds an order."""
        executed.append({"order_id": order_id, "amount": amount})
        await approvals.report(ctx.tool_call_id, True, {"txn": "txn_q9"})
        return "refunded"

    @function_tool(
        needs_approval=approvals.needs_approval(
            "lookup_order", tool="adp_orders.lookup", risk_class="READ_ONLY"
        )
    )
    def lookup_order(order_id: str) -> str:
        """Looks an order up."""
        executed.append({"lookup": order_id})
        return "delivered, INR 4200"

    return Agent(name="support", model=model, tools=[lookup_order, issue_refund])


def refund_script() -> list[Any]:
    return [
        [function_call("lookup_order", {"order_id": "ord_881"}, call_id="call_lookup")],
        [function_call("issue_refund", {"order_id": "ord_881", "amount": 4200}, call_id="call_r")],
    ]


async def test_openai_agents_pause_persist_settle_resume(server: ServerProcess) -> None:
    stubs, executed = server.stubs(), list[dict[str, Any]]()
    async with AsyncSignoff.connect(server.target, backoff=FAST) as signoff:
        instance = await signoff.invoke_agent(envelope())
        approvals = SignoffApprovals(signoff, instance.instance_id)
        agent = openai_agent(approvals, ScriptedModel(refund_script()), executed)
        result = await Runner.run(agent, "Refund order ord_881")
        # The read-only lookup ran at once; the refund paused the run.
        assert executed == [{"lookup": "ord_881"}]
        assert [item.name for item in result.interruptions] == ["issue_refund"]
        saved = result.to_state().to_string()
        action = waiting_action(stubs, instance.instance_id)
        assert action.tool == REFUND_TOOL

        # Later, as another process would: a fresh set-up, the saved state, signoff's decision.
        approvals = SignoffApprovals(signoff, instance.instance_id)
        model = ScriptedModel([[assistant_message("Refunded.")]])
        agent = openai_agent(approvals, model, executed)
        state = await RunState.from_string(agent, saved)
        with pytest.raises(DecisionTimeout):
            await approvals.settle(state, timeout=0.3)
        decide(stubs, action.action_id, pb.VERDICT_APPROVE)
        await approvals.settle(state, timeout=PATIENCE)
        result = await Runner.run(agent, state)
        assert result.final_output == "Refunded." and not result.interruptions
        assert executed == [{"lookup": "ord_881"}, {"order_id": "ord_881", "amount": 4200}]
        trail = list_events(stubs, instance.instance_id)
        reported = [e for e in trail if e.type == pb.EVENT_TYPE_ACTION_EXECUTION_REPORTED]
        assert [e.action_id for e in reported] == [action.action_id]  # reported once
        consumed = [e for e in trail if e.type == pb.EVENT_TYPE_ACTION_EXECUTING]
        assert action.action_id in {e.action_id for e in consumed}  # settle spent the grant

        # A second resumer of the same saved state (a retried job, say): signoff says the
        # call already ran, so it is rejected and the refund does not run again.
        approvals = SignoffApprovals(signoff, instance.instance_id)
        model = ScriptedModel([[assistant_message("Already refunded.")]])
        agent = openai_agent(approvals, model, executed)
        state = await RunState.from_string(agent, saved)
        await approvals.settle(state, timeout=PATIENCE)
        result = await Runner.run(agent, state)
        assert result.final_output == "Already refunded."
        assert executed == [{"lookup": "ord_881"}, {"order_id": "ord_881", "amount": 4200}]
        assert "already executed" in json.dumps(model.calls[-1].input)


async def test_openai_agents_rejection_and_errors_never_run_the_tool(
    server: ServerProcess,
) -> None:
    stubs, executed = server.stubs(), list[dict[str, Any]]()
    async with AsyncSignoff.connect(server.target, backoff=FAST) as signoff:
        instance = await signoff.invoke_agent(envelope())
        approvals = SignoffApprovals(signoff, instance.instance_id)
        model = ScriptedModel([*refund_script(), [assistant_message("Could not refund.")]])
        agent = openai_agent(approvals, model, executed)
        result = await Runner.run(agent, "Refund order ord_881")
        decide(stubs, waiting_action(stubs, instance.instance_id).action_id, pb.VERDICT_REJECT)
        state = result.to_state()
        await approvals.settle(state, timeout=PATIENCE)
        result = await Runner.run(agent, state)
        assert result.final_output == "Could not refund."
        assert executed == [{"lookup": "ord_881"}]  # the refund never ran
        assert "signoff did not allow this call" in json.dumps(model.calls[-1].input)

    # signoff unreachable: needs_approval pauses the call, and settle() raises, approving
    # nothing; the read-only lookup does not run either.
    async with AsyncSignoff.connect(closed_port(), backoff=FAST) as nowhere:
        approvals = SignoffApprovals(nowhere, instance.instance_id)
        agent = openai_agent(approvals, ScriptedModel(refund_script()[:1]), executed)
        result = await Runner.run(agent, "Look up order ord_881")
        assert [item.name for item in result.interruptions] == ["lookup_order"]
        with pytest.raises(SignoffError):
            await approvals.settle(result.to_state(), timeout=2)
    assert executed == [{"lookup": "ord_881"}]


async def test_openai_agents_run_the_params_an_approver_edited(server: ServerProcess) -> None:
    """gate_tool runs the edited params; a tool gated by needs_approval alone cannot, so the
    call is rejected and its approval settled as not executed, never left APPROVED."""
    stubs, executed = server.stubs(), list[dict[str, Any]]()
    edited = {"order_id": "ord_881", "amount": 3000}
    async with AsyncSignoff.connect(server.target, backoff=FAST) as signoff:
        instance = await signoff.invoke_agent(envelope())
        approvals = SignoffApprovals(signoff, instance.instance_id)

        async def issue_refund(ctx: ToolContext[Any], order_id: str, amount: int) -> str:
            """Refunds an order."""
            executed.append({"order_id": order_id, "amount": amount})
            await approvals.report(ctx.tool_call_id, True, {"txn": "txn_q9"})
            return f"refunded {amount}"

        refund = approvals.gate_tool(
            function_tool(issue_refund), tool=REFUND_TOOL, risk_class="DESTRUCTIVE"
        )
        model = ScriptedModel([refund_script()[1], [assistant_message("Refunded 3000.")]])
        agent = Agent(name="support", model=model, tools=[refund])
        result = await Runner.run(agent, "Refund order ord_881")
        action = waiting_action(stubs, instance.instance_id)
        approve_with_edit(stubs, action.action_id, edited)
        state = result.to_state()
        await approvals.settle(state, timeout=PATIENCE)
        result = await Runner.run(agent, state)
        assert result.final_output == "Refunded 3000."
        assert executed == [edited]
        assert "refunded 3000" in json.dumps(model.calls[-1].input)
        states = [
            e.action_state for e in action_events(stubs, instance.instance_id, action.action_id)
        ]
        assert states[-1] == pb.ACTION_STATE_EXECUTED

        # The same edit on a tool gated by needs_approval alone.
        approvals = SignoffApprovals(signoff, instance.instance_id)
        model = ScriptedModel(
            [
                [
                    function_call(
                        "issue_refund", {"order_id": "ord_881", "amount": 4200}, call_id="c2"
                    )
                ],
                [assistant_message("Not refunded.")],
            ]
        )
        agent = openai_agent(approvals, model, executed)
        result = await Runner.run(agent, "Refund order ord_881")
        action = waiting_action(stubs, instance.instance_id)
        approve_with_edit(stubs, action.action_id, edited)
        state = result.to_state()
        await approvals.settle(state, timeout=PATIENCE)
        result = await Runner.run(agent, state)
        assert result.final_output == "Not refunded." and executed == [edited]
        told = json.dumps(model.calls[-1].input)
        assert "was not executed" in told and "cannot run edited params" in told
        last = action_events(stubs, instance.instance_id, action.action_id)[-1]
        assert last.action_state == pb.ACTION_STATE_FAILED  # settled, not left APPROVED
        with pytest.raises(SignoffError) as spent:
            await signoff.consume_grant(action.action_id, "grt_any")
        assert spent.value.reason == ErrorReason.ALREADY_EXECUTED


def list_events(stubs: Stubs, instance_id: str) -> list[pb.Event]:
    request = audit_pb.ListEventsRequest(instance_id=instance_id, page_size=1000)
    return list(stubs.audit.ListEvents(request, timeout=PATIENCE).events)


# ---- betterproto -------------------------------------------------------------------------


def test_sdk_takes_and_gives_betterproto_messages(server: ServerProcess, client: Signoff) -> None:
    """The SDK accepts betterproto2 messages; its answers convert by wire bytes; the
    betterproto sync stubs work on the SDK's channel."""
    request = bp.InvokeAgentRequest.FromString(envelope().SerializeToString())
    instance = client.invoke_agent(request)
    waiting = client.request_decision(
        instance.instance_id,
        tool_call_id="tc_121",
        tool=REFUND_TOOL,
        params=REFUND,
        risk_class="DESTRUCTIVE",
        wait=False,
    )
    decide(server.stubs(), waiting.action_id, pb.VERDICT_APPROVE)
    proposal = bp.ProposedAction(
        tool_call_id="tc_121",
        tool=REFUND_TOOL,
        risk_class=bp.RiskClass.DESTRUCTIVE,
        params=Struct.from_dict(REFUND),
    )
    decision = client.wait_for_decision(
        instance.instance_id,
        waiting.action_id,
        waiting.revision,
        proposal=proposal,
        timeout=PATIENCE,
    )
    assert decision.params == REFUND and decision.grant_token
    assert decision.action is not None
    action = bp.Action.FromString(decision.action.SerializeToString())
    assert action.state == bp.ActionState.APPROVED and action.decided_by == APPROVER
    stub = bp.ExecutionServiceStub(client.channel)
    got = stub.get_instance(bp.GetInstanceRequest(instance_id=instance.instance_id))
    assert got.instance is not None and got.instance.instance_id == instance.instance_id
