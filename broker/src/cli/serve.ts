import { startBroker, startWorker, type RunningBroker, type RunningWorker } from '../app.js';
import { loadConfig, splitHostPort } from '../config/config.js';
import type { Role } from './constants.js';
import { explainListenError } from './listen-errors.js';

/** Closes the broker on SIGINT/SIGTERM; a second signal exits at once. */
export function closeOnSignal(close: () => Promise<void>): void {
  let closing = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (closing) process.exit(130);
    closing = true;
    close().then(
      () => process.exit(signal === 'SIGINT' ? 130 : 0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** SIGHUP re-reads the policy file at once (it is also watched and polled). */
export function reloadPolicyOnHangup(broker: RunningBroker): void {
  process.on('SIGHUP', () => void broker.policies.reload('signal'));
}

export async function runServe(configFile: string, role: Role = 'all'): Promise<RunningBroker | RunningWorker> {
  const config = await loadConfig(configFile);
  const names = {
    [splitHostPort(config.grpc.listen).port]: `grpc.listen in ${configFile}`,
    [splitHostPort(config.http.listen).port]: `http.listen in ${configFile}`,
    ...(config.health.grpc_listen
      ? { [splitHostPort(config.health.grpc_listen).port]: `health.grpc_listen in ${configFile}` }
      : {}),
    ...(config.console.enabled
      ? { [splitHostPort(config.console.listen).port]: `console.listen in ${configFile}` }
      : {}),
  };
  const running = await (role === 'worker' ? startWorker(config) : startBroker(config, { role })).catch(
    (e: unknown) => {
      throw explainListenError(e, names, 'another broker');
    },
  );
  closeOnSignal(() => running.close());
  if (role !== 'worker') reloadPolicyOnHangup(running as RunningBroker);
  return running;
}
