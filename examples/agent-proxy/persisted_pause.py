"""Pattern A, persisted pause: a LangGraph agent that exits while a human decides.

    python persisted_pause.py agent  --target 127.0.0.1:50051 --workdir /tmp/refund --thread t1
    python persisted_pause.py resume --target 127.0.0.1:50051 --workdir /tmp/refund --thread t1

`agent` opens a signoff instance and runs the graph: the read-only lookup is approved at
once; the refund waits for a human, so its node interrupts, the SQLite checkpointer keeps
the paused graph, and the process exits 0. `resume` (run it from anything that starts
processes) reads the pause from the checkpoint, waits on WatchInstance until signoff has
decided, and resumes the graph by interrupt id: the node asks signoff again, consumes the
approval's grant and refunds with the approved params, once. Run again, it finds the graph
finished and does nothing.
Exit codes: 0 done or paused, 3 still waiting after --timeout, 1 error.
"""

from __future__ import annotations

import argparse
import operator
import sys
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from refund import TOOLS, ToolCall, envelope, scripted_llm

from signoff_client import ActionRejected, DecisionTimeout, InstanceTerminated, Signoff
from signoff_client.adapters.langgraph import gate_tool_call, pauses, resume_command


class State(TypedDict, total=False):
    instance_id: str
    results: Annotated[list[dict[str, Any]], operator.add]  # tool results, in order
    call: ToolCall | None  # the tool call the LLM asked for
    answer: str
    terminated: bool


def build(signoff: Signoff, ledger: Path) -> StateGraph[State]:
    def llm(state: State) -> State:
        step = scripted_llm(state.get("results", []))
        return {"answer": step, "call": None} if isinstance(step, str) else {"call": step}

    def tools(state: State, config: RunnableConfig) -> State:
        call = state["call"]
        assert call is not None
        tool = TOOLS[call["name"]]
        try:  # returns only when signoff APPROVED; pauses the graph while a human decides
            decision = gate_tool_call(
                signoff,
                state["instance_id"],
                call,
                tool=tool.name,
                risk_class=tool.risk_class,
                evidence_refs=tool.evidence_refs,
                config=config,
            )
        except ActionRejected as no:
            return {"results": [{"status": f"not done: rejected by {no.approver}"}]}
        except InstanceTerminated:
            return {"results": [{"status": "not done: cancelled"}], "terminated": True}
        if decision.consumed:  # ran (or started to) before a crash: never twice
            return {"results": [{"status": "done earlier"}]}
        assert decision.params is not None
        # Spend the single-use grant before acting: the action is EXECUTING from here on, so
        # a re-run of this node, even after a crash during the tool, never runs it again.
        signoff.consume_grant(decision.action_id, decision.grant_token)
        outputs = tool.run(decision.params, decision.action_id, ledger)
        signoff.report_execution(decision.action_id, True, f"tool:{tool.name}:{call['id']}")
        return {"results": [{**decision.params, **outputs}]}

    def finish(state: State) -> State:
        if not state.get("terminated"):
            signoff.complete_instance(state["instance_id"])
        return {}

    graph = StateGraph(State)
    graph.add_node("llm", llm)
    graph.add_node("tools", tools)
    graph.add_node("finish", finish)
    graph.add_edge(START, "llm")
    graph.add_conditional_edges("llm", lambda state: "tools" if state.get("call") else "finish")
    graph.add_edge("tools", "llm")
    graph.add_edge("finish", END)
    return graph


def show(graph: CompiledStateGraph[State], config: RunnableConfig) -> None:
    snapshot = graph.get_state(config)
    if not snapshot.values:
        print("nothing started on this thread", flush=True)
    for pause in pauses(snapshot.interrupts):
        print(f"paused: action {pause.action_id} waits for a human", flush=True)
    if "answer" in snapshot.values:
        print(f"finished: {snapshot.values['answer']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["agent", "resume"])
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--thread", default="refund-1", help="the LangGraph thread id")
    parser.add_argument("--timeout", type=float, help="resume: stop waiting after seconds")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    config: RunnableConfig = {"configurable": {"thread_id": args.thread}}
    checkpoints = str(args.workdir / "checkpoints.sqlite")
    with Signoff.connect(args.target) as signoff, SqliteSaver.from_conn_string(checkpoints) as cp:
        graph = build(signoff, args.workdir / "ledger.jsonl").compile(checkpointer=cp)
        snapshot = graph.get_state(config)
        if args.command == "agent":
            if snapshot.values:  # started before: the checkpoint says where it is
                show(graph, config)
                return 0
            instance = signoff.invoke_agent(envelope(f"req_{args.thread}"))
            print(f"instance {instance.instance_id}", flush=True)
            graph.invoke({"instance_id": instance.instance_id, "results": []}, config)
        else:
            for pause in pauses(snapshot.interrupts):
                print(f"watching: action {pause.action_id}", flush=True)
            try:  # waits on WatchInstance; None when nothing of signoff's is paused
                command = resume_command(signoff, snapshot.interrupts, timeout=args.timeout)
            except DecisionTimeout:
                print("still waiting for a human", flush=True)
                return 3
            if command is not None:
                graph.invoke(command, config)
        show(graph, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
