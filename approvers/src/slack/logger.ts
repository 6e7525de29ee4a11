// The logging the Slack channel needs: pino's shape (the broker passes its
// logger), and an adapter for the Bolt and Web API clients' own Logger interface.
import type { Logger as SlackSdkLogger, LogLevel } from '@slack/bolt';

export interface LogFn {
  (obj: object, msg?: string): void;
  (msg: string): void;
}
export interface SlackLogger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

/** Bolt and @slack/web-api log through this; their messages go to our logger under "slack_sdk". */
export function sdkLogger(logger: SlackLogger): SlackSdkLogger {
  const text = (parts: unknown[]) =>
    parts.map((p) => (p instanceof Error ? p.message : typeof p === 'string' ? p : JSON.stringify(p))).join(' ');
  let level = 'info' as LogLevel;
  return {
    debug: (...m: unknown[]) => logger.debug({ source: 'slack_sdk' }, text(m)),
    info: (...m: unknown[]) => logger.debug({ source: 'slack_sdk' }, text(m)),
    warn: (...m: unknown[]) => logger.warn({ source: 'slack_sdk' }, text(m)),
    error: (...m: unknown[]) => logger.error({ source: 'slack_sdk' }, text(m)),
    setLevel: (l: LogLevel) => {
      level = l;
    },
    getLevel: () => level,
    setName: () => undefined,
  };
}
