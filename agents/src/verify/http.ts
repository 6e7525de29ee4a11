// A Node HTTP middleware (plain node:http, Connect, Express) for resource
// servers: the request must carry "Authorization: Bearer <credential>" that
// authorizes what `describe(req)` says this request does, bound to the client
// certificate of the TLS connection. Refusals follow RFC 6750: 401 for a
// missing or invalid token, 403 for one that does not authorize this request,
// 503 when the broker (JWKS, redemption) cannot be reached.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { TLSSocket } from 'node:tls';
import type { JsonObject } from '@countersign/proto';
import { CredentialVerificationError, refusalClass } from './errors.js';
import { bearerToken } from './grpc.js';
import { verifyCredential, type VerifiedCredential, type VerifyOptions } from './verify.js';

/** What one HTTP request does: compared with what the credential authorizes. */
export interface RequestDescription {
  operation: string;
  resource: string;
  /** Omit only when the operation takes no arguments worth binding. */
  parameters?: JsonObject | undefined;
}

export interface HttpVerifierOptions extends Omit<
  VerifyOptions,
  'clientCertificate' | 'parameters' | 'operation' | 'resource' | 'currentDate'
> {
  /** Says what this request does (may read a body parsed earlier). */
  describe: (req: IncomingMessage) => RequestDescription | Promise<RequestDescription>;
  /**
   * The client certificate (PEM or DER): default the TLS connection's. Behind a
   * TLS-terminating proxy, read it from the header the proxy sets.
   */
  clientCertificate?: (req: IncomingMessage) => string | Uint8Array | undefined;
  /** Refuse when there is no client certificate to check the binding against (default true). */
  requireCertificateBinding?: boolean;
}

export type NextFunction = (error?: unknown) => void;

const verifiedRequests = new WeakMap<IncomingMessage, VerifiedCredential>();

/** The credential the middleware verified for this request. */
export const credentialOfRequest = (req: IncomingMessage): VerifiedCredential | undefined => verifiedRequests.get(req);

const HTTP_STATUS = { invalid: 401, forbidden: 403, unavailable: 503 } as const;

function refuse(res: ServerResponse, error: CredentialVerificationError): void {
  const cls = refusalClass(error.code);
  const status = HTTP_STATUS[cls];
  const body = JSON.stringify({
    error: cls === 'invalid' ? 'invalid_token' : cls === 'forbidden' ? 'insufficient_scope' : 'temporarily_unavailable',
    code: error.code,
    message: error.message,
  });
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  };
  if (status !== 503)
    headers['www-authenticate'] =
      `Bearer realm="countersign", error="${cls === 'invalid' ? 'invalid_token' : 'insufficient_scope'}"`;
  res.writeHead(status, headers);
  res.end(body);
}

function peerCertificate(req: IncomingMessage): Uint8Array | undefined {
  const socket = req.socket;
  if (!(socket instanceof TLSSocket)) return undefined;
  const raw = socket.getPeerCertificate()?.raw;
  return raw && raw.length > 0 ? raw : undefined;
}

export function countersignHttp(
  options: HttpVerifierOptions,
): (req: IncomingMessage, res: ServerResponse, next: NextFunction) => void {
  const requireBinding = options.requireCertificateBinding ?? true;
  return (req, res, next) => {
    const run = async () => {
      const token = bearerToken(req.headers.authorization);
      if (token === undefined)
        throw new CredentialVerificationError(
          'ERR_CREDENTIAL_MISSING',
          'credential: send it as "Authorization: Bearer <token>"',
        );
      const certificate = options.clientCertificate ? options.clientCertificate(req) : peerCertificate(req);
      if (certificate === undefined && requireBinding) {
        throw new CredentialVerificationError(
          'ERR_CREDENTIAL_CERTIFICATE_MISMATCH',
          'credential: the request came without a client certificate to check the binding against',
        );
      }
      const description = await options.describe(req);
      const credential = await verifyCredential(token, { ...options, ...description, clientCertificate: certificate });
      verifiedRequests.set(req, credential);
    };
    run().then(
      () => next(),
      (e: unknown) => (e instanceof CredentialVerificationError ? refuse(res, e) : next(e)),
    );
  };
}
