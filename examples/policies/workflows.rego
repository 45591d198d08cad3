# The reference workflows. Each rule that matches adds a finding:
#   {"rule": ID, "effect": "allow" | "require_approval" | "deny", "reason": TEXT,
#    "gate": GATE (require_approval), "refuse": true (ends the instance),
#    "escalate_to": GATE (routes to that gate), "redact": REDACTION (before storing)}
# signoff combines them: any deny wins; else every named gate must approve; else allow.
package signoff

import rego.v1

intent := input.envelope.input.intent

action := input.action

context := object.get(input.envelope.input, "context", {})

payment if startswith(action.tool, "adp_payments.")

# --- support.refund ---------------------------------------------------------------------

refund_amount := to_number(object.get(action.params, "amount", object.get(context, "refund_amount", 0)))

workflow_findings contains {
	"rule": "R_REFUND_REQUIRES_IDV",
	"effect": "deny",
	"reason": "no refund without a verified identity (input.context.identity_verified)",
} if {
	intent == "support.refund"
	payment
	object.get(context, "identity_verified", false) != true
}

workflow_findings contains {
	"rule": "R_HIGH_VALUE_REQUIRES_APPROVAL",
	"effect": "require_approval",
	"gate": "GATE_FINANCE_APPROVAL",
	"reason": sprintf("refund of %v is above %v", [refund_amount, data.limits.refund_approval_threshold]),
} if {
	intent == "support.refund"
	payment
	refund_amount > data.limits.refund_approval_threshold
}

workflow_findings contains {
	"rule": "R_DESTRUCTIVE_PAYMENT_REQUIRES_APPROVAL",
	"effect": "require_approval",
	"gate": "GATE_FINANCE_APPROVAL",
	"reason": "destructive payment steps need a finance approval",
} if {
	payment
	action.risk_class == "DESTRUCTIVE"
}

workflow_findings contains {
	"rule": "R_VERY_HIGH_VALUE_TO_DIRECTORS",
	"effect": "require_approval",
	"escalate_to": "GATE_FINANCE_DIRECTOR",
	"reason": sprintf("refund of %v is above %v: directors decide", [refund_amount, data.limits.refund_director_threshold]),
} if {
	intent == "support.refund"
	payment
	refund_amount > data.limits.refund_director_threshold
}

# --- content.review ---------------------------------------------------------------------

# The classifier's confidence, when the action or the context states it. A plan states it
# as its step's execute_when over the classifier's reported outputs instead (docs/plans.md):
# a block without a stated confidence still waits for a moderation lead.
confidence := to_number(action.params.confidence) if {
	"confidence" in object.keys(action.params)
} else := to_number(context.confidence) if {
	"confidence" in object.keys(context)
}

unsure if confidence < data.limits.moderation_confidence_threshold

confidence_note := sprintf("confidence %v", [confidence]) if {
	is_number(confidence)
} else := "no confidence stated"

workflow_findings contains {
	"rule": "R_PUBLISH_BLOCK_REQUIRES_APPROVAL",
	"effect": "require_approval",
	"gate": "GATE_PUBLISH_BLOCK",
	"reason": sprintf("%v: a moderation lead confirms the block", [confidence_note]),
} if {
	intent == "content.review"
	action.tool == "adp_content.publish_block"
	not unsure
}

workflow_findings contains {
	"rule": "R_PUBLISH_BLOCK_NEEDS_CONFIDENCE",
	"effect": "deny",
	"reason": sprintf("confidence %v is below %v: queue it for a human instead", [confidence, data.limits.moderation_confidence_threshold]),
} if {
	intent == "content.review"
	action.tool == "adp_content.publish_block"
	unsure
}

workflow_findings contains {
	"rule": "R_LOW_CONFIDENCE_TO_HUMAN_QUEUE",
	"effect": "allow",
	"reason": "low-confidence items go to the human review queue without a gate",
} if {
	intent == "content.review"
	action.tool == "adp_queue.append"
	action.risk_class == "LOCAL_WRITE"
}

# --- data.lookup ------------------------------------------------------------------------

workflow_findings contains {
	"rule": "R_PII_EMAIL_REDACTION",
	"effect": "allow",
	"redact": "pii_email",
	"reason": "e-mail addresses are redacted before anything is stored",
} if {
	intent == "data.lookup"
}

workflow_findings contains {
	"rule": "R_LOOKUP_IS_READ_ONLY",
	"effect": "deny",
	"reason": "a data lookup only reads",
} if {
	intent == "data.lookup"
	action.risk_class != "READ_ONLY"
}

# --- MCP tools (signoff mcp-proxy) -------------------------------------------------------

# The MCP gateway asks with input.channel "mcp", tool "<upstream>.<tool>" (the upstream's
# name in the proxy's settings), params = the call's arguments, and a risk class from the
# tool's MCP annotations (readOnlyHint: READ_ONLY, destructiveHint: DESTRUCTIVE,
# openWorldHint: NETWORK) unless the proxy's settings say otherwise. Reads pass through the
# baseline below; these rules make every filesystem change wait and keep system paths out.
mcp if input.envelope.input.channel == "mcp"

mcp_filesystem if {
	mcp
	startswith(action.tool, "fs.")
}

workflow_findings contains {
	"rule": "R_MCP_FS_WRITES_REQUIRE_APPROVAL",
	"effect": "require_approval",
	"gate": "GATE_DEFAULT",
	"reason": sprintf("%v changes files (%v): a human approves", [action.tool, action.risk_class]),
} if {
	mcp_filesystem
	action.risk_class != "READ_ONLY"
}

workflow_findings contains {
	"rule": "R_MCP_FS_NO_SYSTEM_PATHS",
	"effect": "deny",
	"reason": sprintf("%v may not touch %v", [action.tool, path]),
} if {
	mcp_filesystem
	some key in ["path", "source", "destination"]
	path := object.get(action.params, key, "")
	is_string(path)
	some prefix in data.limits.mcp_protected_paths
	startswith(path, prefix)
}

# --- every instance -----------------------------------------------------------------------

workflow_findings contains {
	"rule": "R_REFUSED_TOOL",
	"effect": "deny",
	"refuse": true,
	"reason": sprintf("%v is never allowed; the instance ends", [action.tool]),
} if {
	action.tool in data.limits.refused_tools
}

# --- budgets ----------------------------------------------------------------------------

# input.instance.cost_remaining_cents is there only when the envelope limits the cost.
workflow_findings contains {
	"rule": "R_COSTLY_ACTION_NEEDS_APPROVAL",
	"effect": "require_approval",
	"gate": "GATE_DEFAULT",
	"reason": sprintf("estimated cost of %v cents is over %v of the %v cents left in the budget", [action.estimated_cost_cents, data.limits.costly_share_of_remaining_budget, input.instance.cost_remaining_cents]),
} if {
	object.get(action, "estimated_cost_cents", 0) > data.limits.costly_share_of_remaining_budget * input.instance.cost_remaining_cents
}

routed if {
	some finding in workflow_findings
	finding.effect != "allow"
}

baseline contains {
	"rule": "R_LOCAL_ACTIONS_ALLOWED",
	"effect": "allow",
	"reason": sprintf("%v actions run without approval", [action.risk_class]),
} if {
	not routed
	action.risk_class in {"READ_ONLY", "LOCAL_WRITE"}
}

baseline contains {
	"rule": "R_OUTWARD_ACTIONS_REQUIRE_APPROVAL",
	"effect": "require_approval",
	"gate": "GATE_DEFAULT",
	"reason": sprintf("%v actions need a human approval", [action.risk_class]),
} if {
	not routed
	action.risk_class in {"NETWORK", "DELEGATED", "DESTRUCTIVE"}
}

findings := workflow_findings | baseline

decision_key := "support.refund.execute" if {
	intent == "support.refund"
	payment
} else := "content.review.action" if {
	intent == "content.review"
} else := "data.lookup.result" if {
	intent == "data.lookup"
} else := sprintf("%v.%v", [intent, action.tool])
