// The signoff client for Node: the messages, enums and services generated into ./gen by
// scripts/generate (never edited by hand), and typed clients that speak gRPC over HTTP/2.
import { type Client, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import {
  type ConnectTransportOptions,
  createConnectTransport,
  createGrpcTransport,
  type GrpcTransportOptions,
} from "@connectrpc/connect-node";
import { ApprovalService } from "./gen/signoff/v1/approval_service_pb.js";
import { AuditService } from "./gen/signoff/v1/audit_service_pb.js";
import { ExecutionService } from "./gen/signoff/v1/execution_service_pb.js";
import { PolicyService } from "./gen/signoff/v1/policy_service_pb.js";

// Every generated file, re-exported: a new proto file adds a line here (and a client below).
export * from "./gen/signoff/v1/approval_service_pb.js";
export * from "./gen/signoff/v1/audit_service_pb.js";
export * from "./gen/signoff/v1/execution_service_pb.js";
export * from "./gen/signoff/v1/policy_service_pb.js";
export * from "./gen/signoff/v1/types_pb.js";
// Errors carry a gRPC status code: `err instanceof ConnectError && err.code === Code.Aborted`.
export { Code, ConnectError } from "@connectrpc/connect";

export interface SignoffClients {
  execution: Client<typeof ExecutionService>;
  approval: Client<typeof ApprovalService>;
  audit: Client<typeof AuditService>;
  policy: Client<typeof PolicyService>;
}

/**
 * An interceptor that authenticates every call with a bearer token (signoff rejects
 * calls without credentials): `createSignoffClients(url, { interceptors: [bearer(token)] })`.
 */
export function bearer(token: string): Interceptor {
  return (next) => async (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return await next(request);
  };
}

/**
 * An interceptor that sends the caller's W3C trace context with every call, so that signoff
 * stores the agent's trace id in its DecisionRecords and events. `inject` writes the
 * current context into a carrier (`traceparent`, and `tracestate` if any); with
 * OpenTelemetry: `traceContext((carrier) => propagation.inject(context.active(), carrier))`.
 */
export function traceContext(inject: (carrier: Record<string, string>) => void): Interceptor {
  return (next) => async (request) => {
    const carrier: Record<string, string> = {};
    inject(carrier);
    for (const [key, value] of Object.entries(carrier)) request.header.set(key, value);
    return await next(request);
  };
}

/**
 * Clients for each signoff service, sharing one HTTP/2 connection.
 * `baseUrl` is for example "http://127.0.0.1:50051" (plaintext) or "https://signoff.internal".
 * This uses the gRPC protocol, so it talks to the signoff server like any gRPC client does.
 */
export function createSignoffClients(
  baseUrl: string,
  options: Omit<GrpcTransportOptions, "baseUrl"> = {},
): SignoffClients {
  return clientsOn(createGrpcTransport({ ...options, baseUrl }));
}

/**
 * Clients for each signoff service over the Connect protocol: JSON over HTTP/1.1, as a
 * browser speaks it, to the server's HTTP listener (`signoff serve --http-port 8080`).
 * `baseUrl` is for example "http://127.0.0.1:8080". Errors, streams and authentication are
 * the same as over gRPC.
 */
export function createSignoffHttpClients(
  baseUrl: string,
  options: Pick<ConnectTransportOptions, "interceptors" | "useBinaryFormat"> = {},
): SignoffClients {
  return clientsOn(createConnectTransport({ ...options, baseUrl, httpVersion: "1.1" }));
}

function clientsOn(transport: Transport): SignoffClients {
  return {
    execution: createClient(ExecutionService, transport),
    approval: createClient(ApprovalService, transport),
    audit: createClient(AuditService, transport),
    policy: createClient(PolicyService, transport),
  };
}
