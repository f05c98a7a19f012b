import { describe, expect, it } from 'vitest';
import { createLogger, parseLogLevel } from './log.ts';

/** A logger whose lines are collected, parsed, in memory. */
function capture(level = 'trace') {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    level,
    destination: { write: (s: string) => void lines.push(JSON.parse(s)) },
  });
  return { logger, lines };
}

describe('createLogger', () => {
  it('writes JSON with a level name, the component and the message', () => {
    const { logger, lines } = capture();
    logger.child({ component: 'workqueue' }).info({ key: 'ns/web' }, 'reconciled');
    expect(lines).toEqual([
      expect.objectContaining({ level: 'info', component: 'workqueue', key: 'ns/web', msg: 'reconciled' }),
    ]);
    expect(typeof lines[0]!.time).toBe('string');
  });

  it.each([
    ['a top-level token', { token: 'eyJhbGci' }, ['token']],
    ['a nested access key secret', { provider: { accessKeySecret: 'sk' } }, ['provider', 'accessKeySecret']],
    [
      'a credential two levels down',
      { config: { credentials: { password: 'hunter2' } } },
      ['config', 'credentials', 'password'],
    ],
    [
      'an authorization header',
      { req: { headers: { authorization: 'Bearer x' } } },
      ['req', 'headers', 'authorization'],
    ],
    ['a private key', { tls: { keyPem: '-----BEGIN' } }, ['tls', 'keyPem']],
  ])('redacts %s', (_name, fields, path) => {
    const { logger, lines } = capture();
    logger.info(fields, 'with a secret');
    let value: unknown = lines[0];
    for (const p of path) value = (value as Record<string, unknown>)[p];
    expect(value).toBe('[redacted]');
    expect(JSON.stringify(lines[0])).not.toMatch(/eyJhbGci|"sk"|hunter2|Bearer x|BEGIN/);
  });

  it('keeps fields that only look similar', () => {
    const { logger, lines } = capture();
    logger.info({ tokenExpiry: '2030-01-01', pod: { name: 'web' } }, 'fine');
    expect(lines[0]).toMatchObject({ tokenExpiry: '2030-01-01', pod: { name: 'web' } });
  });

  it('honours the level', () => {
    const { logger, lines } = capture('warn');
    logger.info('dropped');
    logger.warn('kept');
    expect(lines.map((l) => l.msg)).toEqual(['kept']);
  });
});

describe('parseLogLevel', () => {
  it.each([
    [undefined, 'info'],
    ['', 'info'],
    ['DEBUG', 'debug'],
    ['silent', 'silent'],
  ])('%s → %s', (value, level) => {
    expect(parseLogLevel(value)).toBe(level);
  });

  it('names the choices when the level is a typo', () => {
    expect(() => parseLogLevel('verbose')).toThrow(
      'LOG_LEVEL=verbose is not a log level; use one of trace, debug',
    );
  });
});
