"""The one authorization table: which principals may call which RPC. Tenancy (another
tenant's ids answer NOT_FOUND) and gate eligibility are checked where the data is read."""

from collections.abc import Callable

from signoff.domain.models import Principal, PrincipalKind

Allowed = Callable[[Principal], bool]


def agents(p: Principal) -> bool:
    return p.kind in (PrincipalKind.AGENT, PrincipalKind.SERVICE)


def humans(p: Principal) -> bool:
    return p.kind is PrincipalKind.HUMAN


def admins(p: Principal) -> bool:
    return p.is_admin


def anyone(p: Principal) -> bool:
    return True


def either(*checks: Allowed) -> Allowed:
    return lambda p: any(check(p) for check in checks)


RULES: dict[str, Allowed] = {
    "/signoff.v1.ExecutionService/InvokeAgent": agents,
    "/signoff.v1.ExecutionService/RequestDecision": agents,
    "/signoff.v1.ExecutionService/ConsumeGrant": agents,
    "/signoff.v1.ExecutionService/ReportExecution": agents,
    "/signoff.v1.ExecutionService/CompleteInstance": agents,
    "/signoff.v1.ExecutionService/CancelInstance": either(agents, admins),
    "/signoff.v1.ExecutionService/WatchInstance": either(agents, humans),
    "/signoff.v1.ExecutionService/GetInstance": either(agents, humans),
    "/signoff.v1.ExecutionService/ListInstances": either(agents, humans),
    "/signoff.v1.ExecutionService/CheckPlan": agents,
    "/signoff.v1.ExecutionService/RecordCheckpoint": agents,
    "/signoff.v1.ExecutionService/SubmitPlan": agents,
    "/signoff.v1.ApprovalService/ListPendingApprovals": humans,
    "/signoff.v1.ApprovalService/SubmitDecision": humans,
    "/signoff.v1.ApprovalService/WatchApprovals": humans,
    "/signoff.v1.AuditService/GetDecisionRecord": admins,
    "/signoff.v1.AuditService/ListDecisionRecords": admins,
    "/signoff.v1.AuditService/ListEvents": admins,
    "/signoff.v1.AuditService/VerifyChain": admins,
    # A dry run changes nothing; approvers ask it before approving edited params (the
    # console does), which SubmitDecision would evaluate anyway.
    "/signoff.v1.PolicyService/EvaluatePolicy": either(agents, humans),
    "/signoff.v1.PolicyService/GetPolicy": anyone,
}

# Served to anyone, so load balancers and operators can probe and discover.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def allowed(method: str, principal: Principal) -> bool:
    rule = RULES.get(method)
    return rule is not None and rule(principal)  # an RPC missing from the table is denied
