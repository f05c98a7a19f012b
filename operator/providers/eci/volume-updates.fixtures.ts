/** Test fixtures for volume refresh: unsigned JWTs with the claims the freshness rule reads. */

/** A JWT-shaped token issued at `iat` and expiring at `exp` (seconds since the epoch). */
export function jwt(iat: number, exp: number): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'RS256' })}.${part({ iat, exp, sub: 'system:serviceaccount:default:default' })}.sig`;
}
