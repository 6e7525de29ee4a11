// RequestOperation sent as bytes over real mTLS gRPC, so a test can send what no
// client's encoder would produce; and the helpers that read a refusal.
import { Client, credentials, Metadata } from '@grpc/grpc-js';
import { RequestOperationResponse } from '@countersign/proto';
import type { IssuedSvid, TestBroker } from '@countersign/broker/testing';

/** Sends these RequestOperationRequest bytes as `svid`; the answer decoded. */
export function callRequestOperation(
  t: TestBroker,
  svid: IssuedSvid,
  bytes: Buffer,
  timeoutMs = 10_000,
): Promise<RequestOperationResponse> {
  const creds = credentials.createSsl(Buffer.from(t.ca.pem), Buffer.from(svid.keyPem), Buffer.from(svid.chainPem), {
    checkServerIdentity: () => undefined,
  });
  const client = new Client(t.address, creds, { 'grpc.ssl_target_name_override': t.trustDomain });
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      '/countersign.v1.Broker/RequestOperation',
      (b: Buffer) => b,
      (b: Buffer) => RequestOperationResponse.decode(b),
      bytes,
      new Metadata(),
      { deadline: Date.now() + timeoutMs },
      (e, r) => {
        client.close();
        if (e) reject(e);
        else resolve(r as RequestOperationResponse);
      },
    );
  });
}

// The error a call ended with, and its ERR_* code: the identity tests' helpers.
export { errorCode, rejection as refusal } from './identity.js';
