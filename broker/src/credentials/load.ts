// The keyring a configuration describes: every credentials.signing_keys[] file
// with its activate_at (the broker, `keys list` and `audit verify` share it).
import { configPath, type BrokerConfig } from '../config/config.js';
import { Keyring, loadSigningKey } from './keys.js';

export async function loadKeyring(config: BrokerConfig): Promise<Keyring> {
  const keys = await Promise.all(
    config.credentials.signing_keys.map(async (k) => ({
      key: await loadSigningKey(configPath(config, k.file)),
      activateAt: k.activate_at,
    })),
  );
  return new Keyring(keys, { maxTtlMs: config.credentials.max_ttl });
}
