/**
 * Kubernetes resource quantities (k8s.io/apimachinery `resource.Quantity`), parsed once for every part: the
 * downward API's resourceFieldRef, the ECI spec chooser, the local provider's cgroup limits. The grammar:
 *
 *     quantity ::= signedNumber suffix
 *     number   ::= digits | digits.digits | digits. | .digits
 *     suffix   ::= binarySI (Ki Mi Gi Ti Pi Ei) | decimalSI (n u m "" k M G T P E) | (e|E) signedInteger
 *
 * `1E` is an exa and `1E3` a thousand: an exponent needs digits, a suffix has none.
 */

const BINARY: Readonly<Record<string, number>> = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 };
const DECIMAL: Readonly<Record<string, number>> = {
  n: -9,
  u: -6,
  m: -3,
  k: 3,
  M: 6,
  G: 9,
  T: 12,
  P: 15,
  E: 18,
};

const QUANTITY = /^([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$/;

/** A string that is not a Kubernetes quantity. */
export class InvalidQuantityError extends Error {
  override readonly name = 'InvalidQuantityError';
}

/**
 * The value of a quantity as a number (`250m` → 0.25, `1Gi` → 2^30, `1e3` → 1000). Decimal scales are applied as
 * exponents, not by multiplying, so that `250m` is exactly the literal 0.25.
 * @throws InvalidQuantityError when `q` is not a quantity (the apiserver admits none such in a pod)
 */
export function parseQuantity(q: string): number {
  const m = QUANTITY.exec(q.trim());
  if (!m)
    throw new InvalidQuantityError(
      `invalid quantity "${q}": use a number with an optional suffix such as 500m, 1e3 or 2Gi`,
    );
  const [, number, exponent, suffix] = m;
  if (exponent !== undefined) return Number(`${number}e${exponent}`);
  if (suffix === undefined) return Number(number);
  const binary = BINARY[suffix];
  if (binary !== undefined) return Number(number) * 2 ** binary;
  return Number(`${number}e${DECIMAL[suffix]!}`);
}

/** Whether `q` is a Kubernetes quantity. */
export function isQuantity(q: string): boolean {
  return QUANTITY.test(q.trim());
}
