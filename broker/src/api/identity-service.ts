// The Identity gRPC service: ExchangeToken, the one call served without a client
// certificate (the caller has no SVID yet; exchange/oidc-exchange.ts checks its
// token instead). Errors are mapped in status.ts only.
import type { IdentityServer } from '@countersign/proto';
import type { Logger } from 'pino';
import { CountersignError } from '../errors.js';
import type { OidcExchange } from '../exchange/oidc-exchange.js';
import type { Metrics } from '../observability/metrics.js';
import type { Tracing } from '../observability/tracing.js';
import { unary } from './status.js';

export interface IdentityServiceDeps {
  /** Undefined when identity.oidc lists no issuer. */
  exchange: OidcExchange | undefined;
  logger: Logger;
  metrics: Metrics;
  tracing?: Tracing;
}

export function createIdentityService(deps: IdentityServiceDeps): IdentityServer {
  const ctx = { logger: deps.logger, metrics: deps.metrics, tracing: deps.tracing };
  return {
    exchangeToken: unary(
      ctx,
      'ExchangeToken',
      async (call) => {
        if (deps.exchange === undefined) {
          throw new CountersignError(
            'failed_precondition',
            'ERR_OIDC_NOT_CONFIGURED',
            'this broker exchanges no OIDC tokens: identity.oidc lists no issuer (docs/identity.md, "Exchanging an OIDC token")',
          );
        }
        const r = await deps.exchange.exchange(
          { token: call.request.token, csr: call.request.csr, issuer: call.request.issuer },
          call.getPeer(),
        );
        return {
          spiffeId: r.spiffeId,
          svidChain: r.chainPem,
          trustBundle: r.bundlePem,
          expiresAt: new Date(r.expiresAt),
          issuer: r.issuer,
        };
      },
      (res) => ({ 'countersign.spiffe_id': res.spiffeId, 'countersign.issuer': res.issuer }),
    ),
  };
}
