// The Workload API endpoint address, per the SPIFFE Workload Endpoint spec
// (section 4): `unix:///abs/path` (or `unix:/abs/path`) or `tcp://IP:port`.
import { isIP } from 'node:net';
import { WorkloadApiError } from './errors.js';

/** The environment variable that names the Workload API endpoint. */
export const SPIFFE_ENDPOINT_SOCKET = 'SPIFFE_ENDPOINT_SOCKET';

export interface WorkloadEndpoint {
  /** The address as configured. */
  address: string;
  /** The target grpc-js dials, e.g. unix:///run/spire/agent.sock or 127.0.0.1:8081. */
  grpcTarget: string;
}

const MAX_ADDRESS_LENGTH = 4096;

function invalid(address: string, why: string): WorkloadApiError {
  return new WorkloadApiError(
    'ERR_WORKLOAD_API_ADDRESS',
    `workload api: endpoint address ${JSON.stringify(address.slice(0, 200))} ${why}`,
  );
}

/** Parses an endpoint address, throwing WorkloadApiError(ERR_WORKLOAD_API_ADDRESS) with the reason. */
export function parseWorkloadEndpoint(address: string): WorkloadEndpoint {
  if (address.length === 0) throw invalid(address, 'is empty');
  if (address.length > MAX_ADDRESS_LENGTH) throw invalid(address, `is longer than ${MAX_ADDRESS_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    throw invalid(address, 'is not a URI; expected unix:///path/to/socket or tcp://IP:port');
  }
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw invalid(address, 'must not have a query, fragment or user info');
  }
  if (url.protocol === 'unix:') {
    if (url.host !== '') throw invalid(address, 'must not name a host; expected unix:///absolute/path');
    const path = decodeURIComponent(url.pathname);
    if (!path.startsWith('/') || path === '/') throw invalid(address, 'must name an absolute socket path');
    return { address, grpcTarget: `unix://${path}` };
  }
  if (url.protocol === 'tcp:') {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (isIP(host) === 0)
      throw invalid(address, 'must name an IP address, not a host name (SPIFFE Workload Endpoint 4)');
    if (url.port === '') throw invalid(address, 'must name a port');
    if (url.pathname !== '' && url.pathname !== '/') throw invalid(address, 'must not have a path');
    return { address, grpcTarget: `${isIP(host) === 6 ? `[${host}]` : host}:${url.port}` };
  }
  throw invalid(address, `has scheme ${url.protocol.replace(/:$/, '')}; expected unix or tcp`);
}

/** The endpoint from an explicit address, else SPIFFE_ENDPOINT_SOCKET. */
export function workloadEndpointFrom(
  address: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): WorkloadEndpoint {
  const chosen = address !== undefined && address !== '' ? address : env[SPIFFE_ENDPOINT_SOCKET];
  if (chosen === undefined || chosen === '') {
    throw new WorkloadApiError(
      'ERR_WORKLOAD_API_ADDRESS',
      `workload api: no endpoint: set ${SPIFFE_ENDPOINT_SOCKET} (e.g. unix:///run/spire/sockets/agent.sock)`,
    );
  }
  return parseWorkloadEndpoint(chosen);
}
