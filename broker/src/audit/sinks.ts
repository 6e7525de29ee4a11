// Copies of the audit trail outside Redis: JSON lines on stdout (what Kubernetes
// log collectors ship) and, optionally, appended to a file. Redis stays the
// source of truth; a sink that fails is reported, never silently dropped.
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../observability/logger.js';

export interface AuditSink {
  /** One line (no newline): a record or a checkpoint, as `audit export` writes them. */
  write(line: string): void;
  close(): Promise<void>;
}

/** Lines to a stream such as process.stdout. */
export class StreamSink implements AuditSink {
  constructor(private readonly stream: NodeJS.WritableStream) {}
  write(line: string): void {
    this.stream.write(`${line}\n`);
  }
  async close(): Promise<void> {}
}

/** Lines appended to a file (created 0600 when missing). */
export class FileSink implements AuditSink {
  private constructor(
    private readonly stream: WriteStream,
    private readonly file: string,
    private readonly logger: Logger,
  ) {
    stream.on('error', (err) => logger.error({ err, file }, 'audit file sink failed; Redis still holds every record'));
  }

  static async open(file: string, logger: Logger): Promise<FileSink> {
    await mkdir(dirname(file), { recursive: true });
    const stream = createWriteStream(file, { flags: 'a', mode: 0o600 });
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => resolve());
      stream.once('error', reject);
    });
    return new FileSink(stream, file, logger);
  }

  write(line: string): void {
    if (!this.stream.writable) {
      this.logger.error({ file: this.file }, 'audit file sink is closed; a line was not written');
      return;
    }
    this.stream.write(`${line}\n`);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.stream.end(() => resolve()));
  }
}

export class FanoutSink implements AuditSink {
  constructor(private readonly sinks: AuditSink[]) {}
  write(line: string): void {
    for (const s of this.sinks) s.write(line);
  }
  async close(): Promise<void> {
    await Promise.all(this.sinks.map((s) => s.close()));
  }
}

/** The line a checkpoint is exported as. */
export const checkpointLine = (jws: string): string => JSON.stringify({ checkpoint: jws });
