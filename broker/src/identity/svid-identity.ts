// What a validated X.509-SVID says about its holder: produced by x509-svid.ts,
// remembered by svid-cache.ts (which x509-svid.ts uses), read by the layers above.

/** Who a validated certificate says the peer is, and the facts policy may use. */
export interface SvidIdentity {
  readonly spiffeId: string;
  readonly trustDomain: string;
  readonly path: string;
  /** RFC 8705 x5t#S256 of the leaf certificate. */
  readonly thumbprint: string;
  /** Hex serial number of the leaf. */
  readonly serial: string;
  /** Milliseconds since the epoch. */
  readonly notBefore: number;
  readonly notAfter: number;
  /** x5t#S256 of the certificate that signed the leaf (the next in its validated path, or the anchor). */
  readonly issuedBy?: string;
}
