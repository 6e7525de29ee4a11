// Structured JSON logs (pino). Secrets never reach a log line: known secret
// fields are redacted wherever they appear.
import { pino, type Logger, type LoggerOptions } from 'pino';
import { PinoPretty } from 'pino-pretty';

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

export function createLogger(
  options: { level?: string; name?: string; destination?: NodeJS.WritableStream; pretty?: boolean } = {},
): Logger {
  const config: LoggerOptions = {
    name: options.name ?? 'countersign-broker',
    level: options.level ?? 'info',
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (options.pretty === true) {
    // For a person at a terminal (dev mode): one readable block per line, multi-line messages kept.
    return pino(
      config,
      PinoPretty({
        destination: options.destination ?? 2,
        colorize: options.destination === undefined && process.stderr.isTTY,
        translateTime: 'HH:MM:ss',
        ignore: 'pid,hostname,name',
        sync: true,
      }),
    );
  }
  return options.destination
    ? pino(config, options.destination)
    : pino(config, pino.destination({ fd: 2, sync: false }));
}

/** A logger that drops everything, for tests that do not look at logs. */
export const silentLogger = (): Logger => pino({ level: 'silent' });
