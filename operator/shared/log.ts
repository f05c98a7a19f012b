/**
 * Structured JSON logs (pino). One root logger per process; each component takes a child with
 * `{component: '<name>'}` so that a log line says who wrote it. Secret-looking fields are redacted before a line is
 * written: an operator handles cloud credentials and service-account tokens, and logs end up in places with wider
 * access than the secrets themselves.
 */
import pino from 'pino';

/** A pino logger; the only logging type the rest of the code needs. */
export type Logger = pino.Logger;

/** The levels `LOG_LEVEL` accepts, most verbose first. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** A level name from {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

const secretKeys = [
  'accessKeySecret',
  'accessKeyId',
  'securityToken',
  'token',
  'bearerToken',
  'password',
  'secret',
  'clientSecret',
  'privateKey',
  'keyPem',
  'authorization',
  'Authorization',
  'cookie',
];

/**
 * The paths pino censors. pino's wildcards match one level, so each key is listed at the top level and one and
 * two levels down (`{provider: {credentials: {accessKeySecret}}}`), plus HTTP request headers. The keys are
 * exact-match: a field merely containing "token" (e.g. `tokenExpiry`) is kept.
 */
export const REDACT_PATHS: readonly string[] = [
  ...secretKeys.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]),
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
];

/** What {@link createLogger} can be told; everything has a default. */
export interface LoggerOptions {
  /** Level; default `$LOG_LEVEL`, else `info`. */
  level?: string;
  /** Base fields on every line, e.g. `{name: 'spillway'}`. */
  base?: Record<string, unknown>;
  /** Where lines go; default stdout. Tests pass a stream that collects lines. */
  destination?: pino.DestinationStream;
}

/**
 * Checks a level name, so that a typo in `LOG_LEVEL` stops the process with a message that lists the choices
 * (pino's own error does not).
 */
export function parseLogLevel(value: string | undefined, fallback: LogLevel = 'info'): LogLevel {
  if (value === undefined || value === '') return fallback;
  const level = value.toLowerCase();
  if ((LOG_LEVELS as readonly string[]).includes(level)) return level as LogLevel;
  throw new Error(`LOG_LEVEL=${value} is not a log level; use one of ${LOG_LEVELS.join(', ')}`);
}

/** Creates a JSON logger with spillway's redaction rules; most code wants {@link componentLogger} instead. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const config: pino.LoggerOptions = {
    level: parseLogLevel(options.level ?? process.env.LOG_LEVEL),
    base: options.base ?? { name: 'spillway' },
    redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
    // ISO timestamps: read by people grepping logs more often than by machines.
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return options.destination ? pino(config, options.destination) : pino(config);
}

let root: Logger | undefined;

/** The process-wide root logger, created on first use from the environment. */
export function rootLogger(): Logger {
  root ??= createLogger();
  return root;
}

/** A child of the root logger whose lines carry `component`, e.g. `componentLogger('elasticworkload')`. */
export function componentLogger(component: string, bindings: Record<string, unknown> = {}): Logger {
  return rootLogger().child({ component, ...bindings });
}
