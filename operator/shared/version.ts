/**
 * spillway's version, read from package.json: the one place it is written. `spillway version` prints it, and the
 * chart's `version` and `appVersion` must equal it (version.test.ts checks; `make image` tags the image with it).
 */
import { readFileSync } from 'node:fs';

/** The version of this build of spillway (package.json `version`). */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
