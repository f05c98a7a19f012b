/** A free TCP port on 127.0.0.1 for servers a test starts: the operator's own (operator/shared/ports.ts). */
export { freePort } from '../../operator/shared/ports.ts';
