import { describe, expect, it } from 'vitest';
import { InvalidQuantityError, isQuantity, parseQuantity } from './quantity.ts';

describe('parseQuantity', () => {
  it.each([
    ['0', 0],
    ['2', 2],
    ['+2', 2],
    ['-2', -2],
    ['0.5', 0.5],
    ['.5', 0.5],
    ['1.', 1],
    ['250m', 0.25],
    ['100u', 1e-4],
    ['5n', 5e-9],
    ['1k', 1000],
    ['1.5k', 1500],
    ['1M', 1e6],
    ['1G', 1e9],
    ['2T', 2e12],
    ['1P', 1e15],
    ['1E', 1e18],
    ['1Ki', 1024],
    ['64Mi', 64 * 2 ** 20],
    ['1Gi', 2 ** 30],
    ['0.5Gi', 2 ** 29],
    ['1Ti', 2 ** 40],
    ['1Pi', 2 ** 50],
    ['1Ei', 2 ** 60],
    ['1e3', 1000],
    ['1E3', 1000],
    ['1e+3', 1000],
    ['1.5e3', 1500],
    ['12e-3', 0.012],
    ['128974848', 128974848],
    [' 1Gi ', 2 ** 30],
  ])('%s = %d', (q, n) => expect(parseQuantity(q)).toBe(n));

  it.each([
    '',
    'Gi',
    '1 Gi',
    '1gi',
    '1KI',
    '1K',
    '1e',
    '1e3Mi',
    '1Gi3',
    '1.2.3',
    'one',
    '--1',
    '1e1.5',
    '0x10',
  ])('refuses %j', (q) => {
    expect(() => parseQuantity(q)).toThrow(InvalidQuantityError);
    expect(isQuantity(q)).toBe(false);
  });

  it('names the quantity and an example in the error', () => {
    expect(() => parseQuantity('1K')).toThrow(/invalid quantity "1K".*500m/);
  });
});
