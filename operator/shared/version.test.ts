import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { VERSION } from './version.ts';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

describe('VERSION', () => {
  it('is package.json version', () => {
    expect(VERSION).toMatch(/^\d+\.\d+\.\d+/);
    expect(VERSION).toBe((JSON.parse(read('package.json')) as { version: string }).version);
  });

  it("is the chart's version and appVersion, so the image tag and `spillway version` agree", () => {
    const chart = parse(read('charts/spillway/Chart.yaml')) as { version: string; appVersion: string };
    expect({ version: chart.version, appVersion: chart.appVersion }).toEqual({
      version: VERSION,
      appVersion: VERSION,
    });
  });
});
