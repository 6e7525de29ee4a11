// Carries the caller's OpenTelemetry trace (W3C traceparent) to the broker, so the
// broker's spans join the agent's trace. Without an OpenTelemetry SDK registered in
// the agent process this adds nothing.
import { Metadata } from '@grpc/grpc-js';
import { context, propagation } from '@opentelemetry/api';

/** Call metadata carrying the active trace context, if any. */
export function callMetadata(): Metadata {
  const metadata = new Metadata();
  propagation.inject(context.active(), metadata, { set: (carrier, key, value) => carrier.set(key, value) });
  return metadata;
}
