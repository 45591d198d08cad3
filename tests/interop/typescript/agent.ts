// A TypeScript agent run by tests/interop/test_typescript.py as its own process:
//   node build/agent.js HOST:PORT REQUEST_ID [grpc|http]
// grpc (the default): the gRPC protocol to the gRPC port; http: the Connect protocol (JSON
// over HTTP/1.1, as a browser speaks it) to the HTTP listener.
// It asks signoff before a destructive tool call, waits for a human through WatchInstance
// (resuming by revision after a disconnect, never polling), and acts only once approved:
// it asks again for the approval's single-use grant and reports the execution with it.
// Stdout is the protocol with the test: "WAITING <action_id> <instance_id>", "APPROVED
// <action_id>", "DONE".
import {
  Code,
  ConnectError,
  EventType,
  ExecutionResult,
  Outcome,
  RiskClass,
  type SignoffClients,
  bearer,
  createSignoffClients,
  createSignoffHttpClients,
  traceContext,
} from "@signoff/client";

const [target, requestId, protocol = "grpc"] = process.argv.slice(2);
if (!target || !requestId || !["grpc", "http"].includes(protocol)) {
  console.error("usage: agent HOST:PORT REQUEST_ID [grpc|http]");
  process.exit(2);
}
// Every call, the wait included, ends within two minutes.
const signal = AbortSignal.timeout(120_000);

/** Streams the instance from `after` until the action is settled, and returns its outcome. */
async function awaitOutcome(
  { execution }: SignoffClients,
  instanceId: string,
  actionId: string,
  after: bigint,
): Promise<Outcome> {
  for (;;) {
    // Leaving a for-await loop does not cancel the call: abort it, or it holds the process.
    const watch = new AbortController();
    try {
      for await (const { kind } of execution.watchInstance(
        { instanceId, afterRevision: after },
        { signal: AbortSignal.any([signal, watch.signal]) },
      )) {
        if (kind.case !== "event") continue; // a bookmark: nothing new yet
        const event = kind.value;
        after = event.revision;
        const settles =
          event.type === EventType.ACTION_DECIDED || event.type === EventType.ACTION_CANCELLED;
        if (event.actionId === actionId && settles) return event.outcome;
        if (event.type === EventType.INSTANCE_TERMINATED) return Outcome.TERMINATED;
      }
      throw new Error("the watch stream ended before the action was decided");
    } catch (err) {
      // The server went away (a restart, a drain): resume from the last revision seen.
      if (!(err instanceof ConnectError && err.code === Code.Unavailable)) throw err;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    } finally {
      watch.abort();
    }
  }
}

async function main(): Promise<void> {
  // signoff authenticates every call; the test hands the agent its token in the environment.
  const token = process.env.SIGNOFF_TOKEN ?? "";
  // The agent's trace: a real agent injects its active OpenTelemetry context here.
  const inTrace = traceContext((carrier) => {
    if (process.env.TRACEPARENT) carrier.traceparent = process.env.TRACEPARENT;
  });
  const connect = protocol === "http" ? createSignoffHttpClients : createSignoffClients;
  const clients = connect(`http://${target}`, { interceptors: [bearer(token), inTrace] });
  const { execution } = clients;
  const { instance } = await execution.invokeAgent(
    {
      requestId,
      tenantId: "tenant_interop_ts",
      user: { userId: "usr_771" },
      agent: { agentId: "agt_support_ts" },
      input: { intent: "support.refund", message: "Refund order ord_881 for INR 4200." },
    },
    { signal },
  );
  const instanceId = instance!.instanceId;

  // The same proposal (same toolCallId) every time: asking again names the same action.
  const ask = {
    instanceId,
    action: {
      toolCallId: "tc_121",
      tool: "adp_payments.issue_refund",
      params: { order_id: "ord_881", amount: 4200, currency: "INR" },
      riskClass: RiskClass.DESTRUCTIVE,
    },
  };
  const decision = await execution.requestDecision(ask, { signal });
  if (decision.outcome !== Outcome.WAITING_FOR_HUMAN) {
    throw new Error(`expected WAITING_FOR_HUMAN, got ${Outcome[decision.outcome]}`);
  }
  // Watching from the returned revision cannot miss the decision, whenever it comes.
  console.log(`WAITING ${decision.actionId} ${instanceId}`);
  const outcome = await awaitOutcome(clients, instanceId, decision.actionId, decision.revision);
  if (outcome !== Outcome.APPROVED) throw new Error(`not approved: ${Outcome[outcome]}`);
  console.log(`APPROVED ${decision.actionId}`);

  // The stream tells the outcome; the grant to act on it comes from asking again. The
  // answer also holds the params signoff approved (an approver may have edited them).
  const approved = await execution.requestDecision(ask, { signal });
  if (
    approved.outcome !== Outcome.APPROVED ||
    approved.actionId !== decision.actionId ||
    !approved.grantToken
  ) {
    throw new Error(`no grant for ${decision.actionId}: ${Outcome[approved.outcome]}`);
  }

  // Only now does the agent run its tool, with approved.action.params, and report it with
  // the grant: the report consumes it, so the action can be reported executed only once.
  await execution.reportExecution(
    {
      actionId: decision.actionId,
      result: ExecutionResult.SUCCEEDED,
      evidenceRef: "tool:adp_payments.issue_refund:tc_121",
      outputs: { refund_amount_inr: 4200, transaction_id: "txn_ts" },
      grantToken: approved.grantToken,
    },
    { signal },
  );
  await execution.completeInstance({ instanceId }, { signal });
  console.log("DONE");
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
