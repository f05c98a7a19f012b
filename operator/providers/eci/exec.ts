/**
 * Bridges a kubelet exec stream to the WebSocket that ECI's ExecContainerCommand returns. ECI does not document
 * that socket's framing; spillway assumes the Kubernetes channel protocol (`v5.channel.k8s.io`), since ECI runs
 * containers through a Kubernetes-style runtime: binary messages whose first byte is the channel — 0 stdin,
 * 1 stdout, 2 stderr, 3 error (one `metav1.Status` JSON carrying the exit code), 4 resize, 255 close
 * (`[255, 0]` = stdin ended). The fake ECI endpoint speaks exactly this; it is not verified against ECI itself
 * (docs/eci.md says so).
 */
import type { ExecResult, ExecStreams } from '../types.ts';

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const RESIZE = 4;
const CLOSE = 255;

/** The exit code a `metav1.Status` from the error channel carries (0 for Success). */
export function exitCodeOf(status: {
  status?: string;
  details?: { causes?: { reason?: string; message?: string }[] };
}): number {
  if (status.status === 'Success') return 0;
  const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
  const code = Number(cause?.message);
  return Number.isInteger(code) ? code : 1;
}

const frame = (channel: number, data: Uint8Array | string) =>
  Buffer.concat([Buffer.from([channel]), Buffer.from(data)]);

/**
 * Runs the session at `uri`, copying stdin and resizes in and stdout/stderr out, and resolves with the exit
 * code from the error channel. Aborting `streams.signal` closes the socket (ECI then ends the process).
 */
export function execOverWebSocket(uri: string, streams: ExecStreams): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(uri);
    ws.binaryType = 'arraybuffer';
    let exitCode: number | undefined;
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      streams.stdin?.off('data', onStdin);
      if (err) reject(err);
      else if (exitCode === undefined)
        reject(new Error('the ECI exec session closed without an exit status'));
      else resolve({ exitCode });
    };
    const onStdin = (chunk: Buffer) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(frame(STDIN, chunk));
    };
    const abort = () => ws.close(1000);
    streams.signal?.addEventListener('abort', abort, { once: true });
    ws.addEventListener('open', () => {
      if (streams.stdin) {
        streams.stdin.on('data', onStdin);
        streams.stdin.once('end', () => {
          if (ws.readyState === WebSocket.OPEN) ws.send(Buffer.from([CLOSE, STDIN]));
        });
      }
      if (streams.tty && streams.resize) {
        void (async () => {
          for await (const size of streams.resize!) {
            if (ws.readyState !== WebSocket.OPEN) break;
            ws.send(frame(RESIZE, JSON.stringify({ Width: size.width, Height: size.height })));
          }
        })().catch(() => {});
      }
    });
    ws.addEventListener('message', (event: MessageEvent) => {
      const data = Buffer.from(event.data as ArrayBuffer);
      const payload = data.subarray(1);
      switch (data[0]) {
        case STDOUT:
          streams.stdout.write(payload);
          break;
        case STDERR:
          (streams.stderr ?? streams.stdout).write(payload);
          break;
        case ERROR:
          try {
            exitCode = exitCodeOf(JSON.parse(payload.toString()) as Parameters<typeof exitCodeOf>[0]);
          } catch {
            exitCode = 1;
          }
          break;
      }
    });
    ws.addEventListener('error', () => finish(new Error('the ECI exec WebSocket failed')));
    ws.addEventListener('close', () => {
      streams.signal?.removeEventListener('abort', abort);
      // A client that went away gets no status; report it like a killed process.
      if (exitCode === undefined && streams.signal?.aborted) exitCode = 137;
      finish();
    });
  });
}
