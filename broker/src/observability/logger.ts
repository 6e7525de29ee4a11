// Structured JSON logs (pino). Secrets never reach a log line: known secret
// fields are redacted wherever they appear.
import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

export const REDACTED_PATHS = [
  'token',
  '*.token',
  'privateKey',
  '*.privateKey',
  'keyPem',
  '*.keyPem',
  'password',
  '*.password',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'botToken',
  'signingSecret',
  'appToken',
];

export function createLogger(options: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const config: LoggerOptions = {
    name: options.name ?? 'countersign-broker',
    level: options.level ?? 'info',
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return options.destination ? pino(config, options.destination) : pino(config, pino.destination({ fd: 2, sync: false }));
}

/** A logger that drops everything, for tests that do not look at logs. */
export const silentLogger = (): Logger => pino({ level: 'silent' });
