// A Go agent run by tests/interop/test_go.py as its own process:
//
//	agent HOST:PORT REQUEST_ID
//
// It asks signoff before a destructive tool call, waits for a human through WatchInstance
// (resuming by revision after a disconnect, never polling), and acts only once approved:
// it asks again for the approval's single-use grant, consumes it with ConsumeGrant right
// before acting, and reports the execution.
// Stdout is the protocol with the test: "WAITING <action_id> <instance_id>",
// "APPROVED <action_id>", "DONE".
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	signoffv1 "signoff/clients/go/signoff/v1"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: agent HOST:PORT REQUEST_ID")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
}

func run(target, requestID string) error {
	// Every call, the wait included, ends within two minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// signoff authenticates every call; the test hands the agent its token in the environment.
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+os.Getenv("SIGNOFF_TOKEN"))
	// The agent's W3C trace context, so signoff records its trace id (with OpenTelemetry,
	// grpc.WithStatsHandler(otelgrpc.NewClientHandler()) sends it on every call instead).
	if traceparent := os.Getenv("TRACEPARENT"); traceparent != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", traceparent)
	}
	// grpc 1.33 (Debian 12) predates credentials/insecure; WithInsecure means plaintext.
	conn, err := grpc.DialContext(ctx, target, grpc.WithInsecure())
	if err != nil {
		return err
	}
	defer conn.Close()
	execution := signoffv1.NewExecutionServiceClient(conn)

	invoked, err := execution.InvokeAgent(ctx, &signoffv1.InvokeAgentRequest{
		RequestId: requestID,
		TenantId:  "tenant_interop_go",
		User:      &signoffv1.User{UserId: "usr_771"},
		Agent:     &signoffv1.Agent{AgentId: "agt_support_go"},
		Input:     &signoffv1.Input{Intent: "support.refund", Message: "Refund order ord_881 for INR 4200."},
	})
	if err != nil {
		return err
	}
	instanceID := invoked.GetInstance().GetInstanceId()

	params, err := structpb.NewStruct(map[string]interface{}{
		"order_id": "ord_881", "amount": 4200, "currency": "INR",
	})
	if err != nil {
		return err
	}
	// The same proposal (same ToolCallId) every time: asking again names the same action.
	ask := &signoffv1.RequestDecisionRequest{
		InstanceId: instanceID,
		Action: &signoffv1.ProposedAction{
			ToolCallId: "tc_121",
			Tool:       "adp_payments.issue_refund",
			Params:     params,
			RiskClass:  signoffv1.RiskClass_RISK_CLASS_DESTRUCTIVE,
		},
	}
	decision, err := execution.RequestDecision(ctx, ask)
	if err != nil {
		return err
	}
	if decision.Outcome != signoffv1.Outcome_OUTCOME_WAITING_FOR_HUMAN {
		return fmt.Errorf("expected WAITING_FOR_HUMAN, got %v", decision.Outcome)
	}
	// Watching from the returned revision cannot miss the decision, whenever it comes.
	fmt.Printf("WAITING %s %s\n", decision.ActionId, instanceID)
	outcome, err := awaitOutcome(ctx, execution, instanceID, decision.ActionId, decision.Revision)
	if err != nil {
		return err
	}
	if outcome != signoffv1.Outcome_OUTCOME_APPROVED {
		return fmt.Errorf("not approved: %v", outcome)
	}
	fmt.Printf("APPROVED %s\n", decision.ActionId)

	// The stream tells the outcome; the grant to act on it comes from asking again.
	approved, err := execution.RequestDecision(ctx, ask)
	if err != nil {
		return err
	}
	if approved.Outcome != signoffv1.Outcome_OUTCOME_APPROVED ||
		approved.ActionId != decision.ActionId || approved.GrantToken == "" {
		return fmt.Errorf("no grant for %s: %v", decision.ActionId, approved.Outcome)
	}
	// Spend the grant right before acting: the action becomes EXECUTING, and no second
	// run of this agent could execute it again. The answer holds the params to execute.
	consumed, err := execution.ConsumeGrant(ctx, &signoffv1.ConsumeGrantRequest{
		ActionId: decision.ActionId, GrantToken: approved.GrantToken,
	})
	if err != nil {
		return err
	}
	if consumed.GetAction().GetState() != signoffv1.ActionState_ACTION_STATE_EXECUTING {
		return fmt.Errorf("consumed %s but it is %v", decision.ActionId, consumed.GetAction().GetState())
	}

	// Only now does the agent run its tool, with consumed.Action.Params, and report it (an
	// EXECUTING action needs no grant any more).
	outputs, err := structpb.NewStruct(map[string]interface{}{
		"refund_amount_inr": 4200, "transaction_id": "txn_go",
	})
	if err != nil {
		return err
	}
	if _, err := execution.ReportExecution(ctx, &signoffv1.ReportExecutionRequest{
		ActionId:    decision.ActionId,
		Result:      signoffv1.ExecutionResult_EXECUTION_RESULT_SUCCEEDED,
		EvidenceRef: "tool:adp_payments.issue_refund:tc_121",
		Outputs:     outputs,
	}); err != nil {
		return err
	}
	if _, err := execution.CompleteInstance(ctx, &signoffv1.CompleteInstanceRequest{InstanceId: instanceID}); err != nil {
		return err
	}
	fmt.Println("DONE")
	return nil
}

// awaitOutcome streams the instance from revision `after` until the action is settled.
func awaitOutcome(ctx context.Context, execution signoffv1.ExecutionServiceClient,
	instanceID, actionID string, after int64) (signoffv1.Outcome, error) {
	for {
		outcome, err := watchOnce(ctx, execution, instanceID, actionID, &after)
		if err == nil {
			return outcome, nil
		}
		// The server went away (a restart, a drain): resume from the last revision seen.
		if status.Code(err) != codes.Unavailable {
			return 0, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func watchOnce(ctx context.Context, execution signoffv1.ExecutionServiceClient,
	instanceID, actionID string, after *int64) (signoffv1.Outcome, error) {
	ctx, cancel := context.WithCancel(ctx) // ends the call when we stop reading
	defer cancel()
	stream, err := execution.WatchInstance(ctx, &signoffv1.WatchInstanceRequest{
		InstanceId: instanceID, AfterRevision: *after,
	})
	if err != nil {
		return 0, err
	}
	for {
		response, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, errors.New("the watch stream ended before the action was decided")
			}
			return 0, err
		}
		event := response.GetEvent()
		if event == nil {
			continue // a bookmark: nothing new yet
		}
		*after = event.Revision
		settles := event.Type == signoffv1.EventType_EVENT_TYPE_ACTION_DECIDED ||
			event.Type == signoffv1.EventType_EVENT_TYPE_ACTION_CANCELLED
		if event.ActionId == actionID && settles {
			return event.Outcome, nil
		}
		if event.Type == signoffv1.EventType_EVENT_TYPE_INSTANCE_TERMINATED {
			return signoffv1.Outcome_OUTCOME_TERMINATED, nil
		}
	}
}
