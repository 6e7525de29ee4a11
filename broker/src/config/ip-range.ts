// Addresses and CIDR ranges in configuration (console.rate_limits.trusted_proxies),
// checked with node's BlockList: no hand-written address arithmetic.
import { isIP, type BlockList } from 'node:net';

/** Parses "10.0.0.0/8", "2001:db8::/32" or a single address into a BlockList entry; false when it is neither. */
export function addProxy(list: BlockList, text: string): boolean {
  const [address, bits, ...rest] = text.split('/');
  const family = isIP(address ?? '');
  if (family === 0 || rest.length > 0) return false;
  const type = family === 6 ? 'ipv6' : 'ipv4';
  if (bits === undefined) {
    list.addAddress(address as string, type);
    return true;
  }
  const prefix = Number(bits);
  if (!/^\d{1,3}$/.test(bits) || prefix > (family === 6 ? 128 : 32)) return false;
  list.addSubnet(address as string, prefix, type);
  return true;
}
