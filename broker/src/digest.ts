// SHA-256 in one call. The allow path hashes each audit record, the credential and
// the workload's name: node:crypto's one-shot hash (Node 20.12+) costs about half of
// a Hash object for such short inputs; older Node 20 releases get the Hash object.
import * as crypto from 'node:crypto';

type Encoding = 'hex' | 'base64url';
type OneShot = (algorithm: string, data: string | Uint8Array, encoding: Encoding) => string;

const oneShot = (crypto as { hash?: OneShot }).hash;

/** SHA-256 of a string (as UTF-8) or of bytes, hex or base64url. */
export const sha256 =
  oneShot !== undefined
    ? (data: string | Uint8Array, encoding: Encoding): string => oneShot('sha256', data, encoding)
    : (data: string | Uint8Array, encoding: Encoding): string =>
        crypto.createHash('sha256').update(data).digest(encoding);
