// Optional OpenTelemetry tracing: one server span per gRPC call, exported over
// OTLP/HTTP, continuing the trace an agent started (W3C traceparent in the call's
// metadata). Off unless an endpoint is configured; then nothing is registered
// globally, so several brokers in one process (tests) keep their own traces.
import type { Metadata } from '@grpc/grpc-js';
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Span,
  type TextMapGetter,
  type TextMapPropagator,
  type Tracer,
} from '@opentelemetry/api';
// The SDK and the exporter are imported by start() only: a broker without tracing (the default)
// does not load them.
import type { TracerProvider } from '@opentelemetry/sdk-trace';
import type { Logger } from './logger.js';

export interface TracingSettings {
  /** OTLP/HTTP base endpoint, e.g. http://otel-collector:4318 (spans go to <endpoint>/v1/traces). */
  endpoint: string;
  serviceName: string;
  /** Fraction of new traces recorded (a trace an agent sampled is always continued). */
  sampleRatio: number;
}

const metadataGetter: TextMapGetter<Metadata> = {
  keys: (carrier) => Object.keys(carrier.getMap()),
  get: (carrier, key) => {
    const values = carrier.get(key);
    return values.length === 0 ? undefined : values.map(String);
  },
};

export class Tracing {
  private constructor(
    private readonly tracer: Tracer,
    private readonly provider: TracerProvider | undefined,
    private readonly propagator: TextMapPropagator | undefined,
  ) {}

  /** No spans: the default. */
  static disabled(): Tracing {
    return new Tracing(trace.getTracer('countersign-broker'), undefined, undefined);
  }

  static async start(settings: TracingSettings, logger: Logger): Promise<Tracing> {
    const [{ W3CTraceContextPropagator }, { OTLPTraceExporter }, { resourceFromAttributes }, sdk] = await Promise.all([
      import('@opentelemetry/core'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/resources'),
      import('@opentelemetry/sdk-trace'),
    ]);
    const { BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider } = sdk;
    const url = /\/v1\/traces\/?$/.test(settings.endpoint)
      ? settings.endpoint
      : `${settings.endpoint.replace(/\/+$/, '')}/v1/traces`;
    const provider = new TracerProvider({
      resource: resourceFromAttributes({ 'service.name': settings.serviceName }),
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(settings.sampleRatio) }),
      spanProcessors: [
        new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url }), scheduledDelayMillis: 1000 }),
      ],
    });
    logger.info(
      { url, serviceName: settings.serviceName, sampleRatio: settings.sampleRatio },
      'tracing: exporting spans over OTLP/HTTP',
    );
    return new Tracing(provider.getTracer('countersign-broker'), provider, new W3CTraceContextPropagator());
  }

  get enabled(): boolean {
    return this.provider !== undefined;
  }

  /** A server span for one RPC, child of the caller's span when its metadata carries traceparent. */
  serverSpan(method: string, metadata: Metadata): Span | undefined {
    if (this.provider === undefined || this.propagator === undefined) return undefined;
    const parent = this.propagator.extract(ROOT_CONTEXT, metadata, metadataGetter);
    return this.tracer.startSpan(
      `countersign.v1/${method}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          'rpc.system': 'grpc',
          'rpc.service':
            method === 'ListPending' || method === 'Decide'
              ? 'countersign.v1.Approvals'
              : method === 'ExchangeToken'
                ? 'countersign.v1.Identity'
                : 'countersign.v1.Broker',
          'rpc.method': method,
        },
      },
      parent,
    );
  }

  async shutdown(): Promise<void> {
    await this.provider?.shutdown();
  }
}

/** Ends a span with the outcome of its call. */
export function endSpan(
  span: Span | undefined,
  outcome: { attributes?: Attributes; errorCode?: string; message?: string },
): void {
  if (span === undefined) return;
  if (outcome.attributes) span.setAttributes(outcome.attributes);
  if (outcome.errorCode !== undefined) {
    span.setAttribute('countersign.error_code', outcome.errorCode);
    span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.message ?? outcome.errorCode });
  }
  span.end();
}
