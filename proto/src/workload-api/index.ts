// The SPIFFE Workload API client shared by the broker and the agents.
export * from './client.js';
export * from './endpoint.js';
export * from './errors.js';
export * from './x509-context.js';
export {
  SpiffeWorkloadAPIService,
  type SpiffeWorkloadAPIServer,
  X509SVIDResponse,
  X509SVID,
} from '../gen/spiffe/workload/workload.js';
