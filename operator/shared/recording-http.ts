/**
 * Test support: a client-node `Configuration` whose HTTP layer is a function instead of a socket. Real API
 * classes built on it serialise and deserialise exactly as in production (so a test sees the bytes the
 * apiserver would get, e.g. MicroTime's six fractional digits), and every request is recorded.
 */
import {
  createConfiguration,
  ResponseContext,
  ServerConfiguration,
  wrapHttpLibrary,
  type Configuration,
  type RequestContext,
} from '@kubernetes/client-node';

/** One request as it would have gone on the wire. */
export interface RecordedRequest {
  method: string;
  url: URL;
  headers: Record<string, string>;
  /** The body as sent (JSON text), or undefined. */
  body: string | undefined;
}

/** What the fake server answers: a status and a body (serialised as JSON unless it is a string). */
export interface FakeResponse {
  status: number;
  body?: unknown;
}

/** Answers one request. */
export type Responder = (req: RecordedRequest) => FakeResponse | Promise<FakeResponse>;

/** The server every recorded request is addressed to. */
export const FAKE_SERVER = 'https://apiserver.test';

/** A Configuration whose requests go to `respond`, and the list they are recorded in. */
export function recordingConfiguration(respond: Responder): {
  configuration: Configuration;
  requests: RecordedRequest[];
} {
  const requests: RecordedRequest[] = [];
  const httpApi = wrapHttpLibrary({
    async send(ctx: RequestContext): Promise<ResponseContext> {
      const raw = ctx.getBody();
      const req: RecordedRequest = {
        method: ctx.getHttpMethod(),
        url: new URL(ctx.getUrl()),
        headers: { ...ctx.getHeaders() },
        body: typeof raw === 'string' ? raw : raw === undefined ? undefined : String(raw),
      };
      requests.push(req);
      const res = await respond(req);
      const text =
        res.body === undefined ? '' : typeof res.body === 'string' ? res.body : JSON.stringify(res.body);
      return new ResponseContext(
        res.status,
        { 'content-type': 'application/json' },
        {
          text: async () => text,
          binary: async () => Buffer.from(text),
          stream: () => null,
        },
      );
    },
  });
  const configuration = createConfiguration({
    baseServer: new ServerConfiguration(FAKE_SERVER, {}),
    httpApi,
    authMethods: {},
  });
  return { configuration, requests };
}

/** A Kubernetes `Status` failure body, as the apiserver sends with 4xx/5xx answers. */
export function statusBody(code: number, reason: string, message: string): FakeResponse {
  return {
    status: code,
    body: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, message, code },
  };
}
