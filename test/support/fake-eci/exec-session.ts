/**
 * The exec sessions behind the fake's `WebSocketUri`. ECI does not document the framing of that socket, so
 * the fake speaks the Kubernetes channel protocol (`v5.channel.k8s.io`), which spillway's provider implements
 * (operator/providers/eci/exec.ts): binary messages whose first byte is the channel — 0 stdin, 1 stdout,
 * 2 stderr, 3 error (one `metav1.Status` JSON, then the socket closes), 4 resize, 255 close (`[255, 0]`: stdin
 * ended). A handful of built-in commands stand in for a container's programs.
 */
import type { WebSocketPeer } from './websocket.ts';

/** An exec session waiting for its WebSocket. */
export interface ExecSession {
  groupId: string;
  container: string;
  command: string[];
  tty: boolean;
}

/** What the fake records about a finished session, for assertions. */
export interface ExecRecord extends ExecSession {
  exitCode: number;
  resizes: { Width: number; Height: number }[];
}

const send = (peer: WebSocketPeer, channel: number, data: string | Buffer) =>
  peer.send(Buffer.concat([Buffer.from([channel]), Buffer.from(data)]));

function finish(peer: WebSocketPeer, exitCode: number): void {
  const status =
    exitCode === 0
      ? { metadata: {}, status: 'Success' }
      : {
          metadata: {},
          status: 'Failure',
          message: `command terminated with non-zero exit code: ${exitCode}`,
          reason: 'NonZeroExitCode',
          details: { causes: [{ reason: 'ExitCode', message: String(exitCode) }] },
        };
  send(peer, 3, JSON.stringify(status));
  peer.close(1000);
}

/**
 * Runs `session` over `peer`: `echo ARGS`, `cat` (stdin to stdout until stdin ends), `sh -c "exit N"`;
 * anything else writes `<cmd>: not found` to stderr and exits 127 like a shell.
 */
export function runExecSession(
  session: ExecSession,
  peer: WebSocketPeer,
  done: (record: ExecRecord) => void,
): void {
  const record: ExecRecord = { ...session, exitCode: -1, resizes: [] };
  const end = (code: number) => {
    record.exitCode = code;
    finish(peer, code);
    done(record);
  };
  const out = 1;
  // With a TTY there is no stderr stream: everything goes to stdout, as with a real terminal.
  const err = session.tty ? 1 : 2;
  const [cmd, ...args] = session.command;
  let onStdin: ((data: Buffer | undefined) => void) | undefined;
  peer.onMessage = (msg) => {
    const channel = msg[0];
    const payload = msg.subarray(1);
    if (channel === 0) onStdin?.(payload);
    else if (channel === 4)
      record.resizes.push(JSON.parse(payload.toString()) as ExecRecord['resizes'][number]);
    else if (channel === 255 && payload[0] === 0) onStdin?.(undefined);
  };
  if (cmd === 'echo') {
    send(peer, out, `${args.join(' ')}\n`);
    end(0);
  } else if (cmd === 'cat') {
    onStdin = (data) => (data ? send(peer, out, data) : end(0));
  } else if (cmd === 'sh' && args[0] === '-c' && /^exit \d+$/.test(args[1] ?? '')) {
    end(Number(args[1]!.slice(5)));
  } else {
    send(peer, err, `${cmd ?? ''}: not found\n`);
    end(127);
  }
}
