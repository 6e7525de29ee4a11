import { startBroker, type RunningBroker } from '../app.js';
import { loadConfig } from '../config/config.js';

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

export async function runServe(configFile: string): Promise<RunningBroker> {
  const config = await loadConfig(configFile);
  const broker = await startBroker(config);
  closeOnSignal(() => broker.close());
  reloadPolicyOnHangup(broker);
  return broker;
}
