package signoff

import rego.v1

findings contains {"rule": "ALLOW_LOCAL_ACTIONS", "effect": "allow"} if {
	input.action.risk_class in {"READ_ONLY", "LOCAL_WRITE"}
}

findings contains {
	"rule": "GATE_OUTWARD_ACTIONS",
	"effect": "require_approval",
	"gate": "GATE_DEFAULT",
	"reason": sprintf("%v actions need a human approval", [input.action.risk_class]),
} if {
	input.action.risk_class in {"DELEGATED", "DESTRUCTIVE"}
}

findings contains {
	"rule": "GATE_OPEN_WORLD_BRIEFLY",
	"effect": "require_approval",
	"gate": "GATE_SHORT",
	"reason": "open-world tools wait one second",
} if {
	input.action.risk_class == "NETWORK"
}

decision_key := sprintf("%v.%v", [input.envelope.input.intent, input.action.tool])

findings contains {
	"rule": "DENY_WRITES_IN_READ_ONLY_SESSIONS",
	"effect": "deny",
	"reason": "this session only reads",
} if {
	input.envelope.input.intent == "mcp.readonly"
	input.action.risk_class != "READ_ONLY"
}
