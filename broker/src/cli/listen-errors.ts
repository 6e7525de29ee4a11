// A listener that cannot bind says which address, what probably holds it, and which option
// or key moves it.
import { CountersignError } from '../errors.js';

export interface ListenerNames {
  /** port -> how to change it, e.g. 7443 -> "--grpc-port" or "grpc.listen in config.yaml". */
  [port: number]: string;
}

/** The error for a failed start-up, rewritten when an address was in use; others unchanged. */
export function explainListenError(e: unknown, names: ListenerNames, running: string): unknown {
  const error = e as NodeJS.ErrnoException & { address?: string; port?: number };
  if (error?.code !== 'EADDRINUSE') return e;
  const where = error.port !== undefined ? `${error.address ?? '127.0.0.1'}:${error.port}` : 'the address';
  const option = error.port !== undefined ? names[error.port] : undefined;
  return new CountersignError(
    'unavailable',
    'ERR_ADDRESS_IN_USE',
    `${where} is already in use: ${running} may already be running there. Stop it, or choose another port${option !== undefined ? ` with ${option}` : ''}`,
    { address: where },
  );
}
