"""Pattern B, split agent: one process prepares and asks, another acts after approval.

    python split_agent.py prepare --target 127.0.0.1:50051 --handoff /tmp/refund.json
    python split_agent.py perform --target 127.0.0.1:50051 --handoff /tmp/refund.json \\
        --ledger /tmp/ledger.jsonl

`prepare` opens a signoff instance, runs the scripted planner (the read-only lookup is
approved and run at once) and asks for the refund. It waits for a human, so `prepare` writes
a minimal hand-off (instance_id, action_id, revision and the proposal, nothing else) and
exits 0. `perform`, started later with that file, learns the outcome through WatchInstance,
gets the approved params and the execution grant by asking again with the same proposal,
consumes the grant, refunds once, reports and completes the instance. Run again, signoff
says the action was executed, and it does not refund twice. Exit codes: 0 done, rejected
or handed off, 3 still waiting after --timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from refund import TOOLS, envelope, new_request_id, scripted_llm

from signoff.v1 import types_pb2 as pb
from signoff_client import (
    WAITING_FOR_HUMAN,
    ActionRejected,
    DecisionTimeout,
    InstanceTerminated,
    Signoff,
    proposed_action,
)
from signoff_client.sdk import Decision


def write_handoff(path: Path, decision: Decision, proposal: dict[str, Any]) -> None:
    handoff = {
        "instance_id": decision.instance_id,
        "action_id": decision.action_id,
        "revision": decision.revision,
        "proposal": proposal,
    }
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(handoff, indent=2) + "\n")
    os.replace(partial, path)  # atomic: the next stage never reads half a file


def prepare(signoff: Signoff, handoff: Path, ledger: Path) -> int:
    instance = signoff.invoke_agent(envelope(new_request_id()))
    print(f"instance {instance.instance_id}", flush=True)
    results: list[dict[str, Any]] = []
    while not isinstance(step := scripted_llm(results), str):
        tool = TOOLS[step["name"]]
        proposal = {
            "tool_call_id": step["id"],
            "tool": tool.name,
            "params": step["args"],
            "risk_class": tool.risk_class,
            "evidence_refs": list(tool.evidence_refs),
        }
        try:
            decision = signoff.request_decision(instance.instance_id, **proposal, wait=False)
        except (ActionRejected, InstanceTerminated) as no:
            print(f"not allowed: {no}", flush=True)
            return 0
        if decision.outcome == WAITING_FOR_HUMAN:  # end this stage: hand off and exit
            write_handoff(handoff, decision, proposal)
            print(f"handed off: action {decision.action_id} waits for a human", flush=True)
            return 0
        assert decision.params is not None
        signoff.consume_grant(decision.action_id, decision.grant_token)  # now EXECUTING
        results.append(tool.run(decision.params, decision.action_id, ledger))
        signoff.report_execution(decision.action_id, True, f"tool:{tool.name}:{step['id']}")
    signoff.complete_instance(instance.instance_id)
    print(f"finished: {step}", flush=True)
    return 0


def perform(signoff: Signoff, handoff: Path, ledger: Path, timeout: float | None) -> int:
    state = json.loads(handoff.read_text())
    instance_id, proposal = state["instance_id"], state["proposal"]
    print(f"watching: action {state['action_id']}", flush=True)
    try:  # waits on WatchInstance, then asks again with the proposal: approved params, grant
        decision = signoff.wait_for_decision(
            instance_id,
            state["action_id"],
            state["revision"],
            proposal=proposed_action(**proposal),
            timeout=timeout,
        )
    except DecisionTimeout:
        print("still waiting for a human", flush=True)
        return 3
    except ActionRejected as no:
        signoff.complete_instance(instance_id)
        print(f"finished: not refunded, rejected by {no.approver}", flush=True)
        return 0
    except InstanceTerminated:
        print("finished: not refunded, the instance was cancelled", flush=True)
        return 0
    if decision.consumed:  # this stage ran before: never twice
        assert decision.action is not None
        if decision.action.state == pb.ACTION_STATE_EXECUTING:  # it died before its report
            print(f"finished: started earlier, never reported ({decision.action_id})", flush=True)
        else:
            print(f"finished: already executed ({decision.action_id})", flush=True)
        return 0
    assert decision.params is not None
    tool = next(tool for tool in TOOLS.values() if tool.name == proposal["tool"])
    # Spend the single-use grant before refunding: from here on the action is EXECUTING, and
    # no later run refunds again, even if this one dies before its report.
    signoff.consume_grant(decision.action_id, decision.grant_token)
    outputs = tool.run(decision.params, decision.action_id, ledger)
    evidence = f"tool:{tool.name}:{proposal['tool_call_id']}"
    signoff.report_execution(decision.action_id, True, evidence, outputs)
    signoff.complete_instance(instance_id)
    print(f"finished: refunded ({outputs['transaction_id']})", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["prepare", "perform"])
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--handoff", type=Path, required=True)
    parser.add_argument("--ledger", type=Path, default=Path("ledger.jsonl"))
    parser.add_argument("--timeout", type=float, help="perform: stop waiting after seconds")
    args = parser.parse_args(argv)
    with Signoff.connect(args.target) as signoff:
        if args.command == "prepare":
            return prepare(signoff, args.handoff, args.ledger)
        return perform(signoff, args.handoff, args.ledger, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
