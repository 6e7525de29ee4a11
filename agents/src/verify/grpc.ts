// A grpc-js server interceptor for resource servers: every call to a guarded
// method must carry a Countersign credential ("authorization: Bearer <token>")
// that authorizes exactly this operation, on this resource, with the arguments
// in this request message, bound to the client certificate of this connection.
// Methods not named are refused unless `unlisted: 'pass'`. Handlers read the
// verified credential with credentialOf(call.metadata).
import {
  Metadata,
  ServerInterceptingCall,
  status as GrpcStatus,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
  type ServerMethodDefinition,
} from '@grpc/grpc-js';
import type { JsonObject } from '@countersign/proto';
import { CredentialVerificationError, refusalClass } from './errors.js';
import { verifyCredential, type VerifiedCredential, type VerifyOptions } from './verify.js';

import { ERROR_CODE_TRAILER } from '@countersign/proto';

export { ERROR_CODE_TRAILER };

/** What a guarded method does, from its request message. */
// any: a request message is whatever the service's codec produces; each binding narrows it.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface MethodBinding<Req = any> {
  operation: string;
  resource: string | ((request: Req) => string);
  /** The arguments the credential must have been issued for; default: not checked. */
  parameters?: (request: Req) => JsonObject;
}

export interface GrpcVerifierOptions extends Omit<
  VerifyOptions,
  'clientCertificate' | 'parameters' | 'operation' | 'resource' | 'currentDate'
> {
  /** Guarded methods by full path ("/pkg.Service/Method"). */
  methods: Record<string, MethodBinding>;
  /** What to do with methods not listed: refuse (default) or let through unchecked (health checks, reflection). */
  unlisted?: 'refuse' | 'pass';
  /** Refuse when the connection has no client certificate to check the binding against (default true). */
  requireCertificateBinding?: boolean;
}

const verified = new WeakMap<Metadata, VerifiedCredential>();

/** The credential the interceptor verified for this call (undefined for unguarded methods). */
export const credentialOf = (metadata: Metadata): VerifiedCredential | undefined => verified.get(metadata);

const BEARER = /^Bearer +([A-Za-z0-9._~+/-]+=*)$/i;

/** The token from "authorization: Bearer <token>", or undefined. */
export function bearerToken(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  return BEARER.exec(value.trim())?.[1];
}

const STATUS = {
  invalid: GrpcStatus.UNAUTHENTICATED,
  forbidden: GrpcStatus.PERMISSION_DENIED,
  unavailable: GrpcStatus.UNAVAILABLE,
} as const;

function refuse(call: ServerInterceptingCallInterface, error: CredentialVerificationError): void {
  const trailers = new Metadata();
  trailers.set(ERROR_CODE_TRAILER, error.code);
  call.sendStatus({ code: STATUS[refusalClass(error.code)], details: error.message, metadata: trailers });
}

export function countersignInterceptor(options: GrpcVerifierOptions): ServerInterceptor {
  const requireBinding = options.requireCertificateBinding ?? true;
  return (method: ServerMethodDefinition<unknown, unknown>, call: ServerInterceptingCallInterface) => {
    const binding = options.methods[method.path];
    if (binding === undefined && options.unlisted === 'pass') return new ServerInterceptingCall(call);
    let metadata: Metadata | undefined;
    let token: string | undefined;
    let done = false;
    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(md, nextMetadata) {
            metadata = md;
            token = bearerToken(md.get('authorization')[0]?.toString());
            nextMetadata(md);
          },
          onReceiveMessage(message, nextMessage) {
            if (done) return nextMessage(message); // client streams: the first message decides
            done = true;
            const error = (code: CredentialVerificationError['code'], text: string) =>
              refuse(call, new CredentialVerificationError(code, `credential: ${text}`));
            if (binding === undefined)
              return error(
                'ERR_CREDENTIAL_OPERATION_MISMATCH',
                `method ${method.path} is not guarded by any operation; refusing`,
              );
            if (token === undefined)
              return error('ERR_CREDENTIAL_MISSING', 'send it as "authorization: Bearer <token>" metadata');
            const certificate = call.getAuthContext().sslPeerCertificate?.raw;
            if (certificate === undefined && requireBinding)
              return error(
                'ERR_CREDENTIAL_CERTIFICATE_MISMATCH',
                'the connection has no client certificate to check the binding against',
              );
            let expectations;
            try {
              expectations = {
                operation: binding.operation,
                resource: typeof binding.resource === 'function' ? binding.resource(message) : binding.resource,
                parameters: binding.parameters?.(message),
              };
            } catch (e) {
              return error(
                'ERR_CREDENTIAL_PARAMETERS_MISMATCH',
                `the request cannot be described for checking: ${(e as Error).message}`,
              );
            }
            verifyCredential(token, { ...options, ...expectations, clientCertificate: certificate }).then(
              (credential) => {
                if (metadata !== undefined) verified.set(metadata, credential);
                nextMessage(message);
              },
              (e: unknown) => {
                if (e instanceof CredentialVerificationError) refuse(call, e);
                else
                  call.sendStatus({
                    code: GrpcStatus.INTERNAL,
                    details: 'credential verification failed unexpectedly',
                  });
              },
            );
          },
        });
      },
    });
  };
}
