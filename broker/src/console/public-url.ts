// The console's public URL as the configuration gives it: a leaf, so the CLI's `audit verify`
// can name the console's origin without loading the console itself.
import { splitHostPort, type BrokerConfig } from '../config/config.js';

/** The console's public URL without a listener (worker role): configured, or localhost at the configured port. */
export function configuredPublicUrl(config: BrokerConfig): string | undefined {
  if (config.console.public_url !== undefined) return config.console.public_url.replace(/\/$/, '');
  const { port } = splitHostPort(config.console.listen);
  return port === 0 ? undefined : `${config.console.tls ? 'https' : 'http'}://localhost:${port}`;
}
