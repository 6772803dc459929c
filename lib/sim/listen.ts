/**
 * Listening for the simulators: on 127.0.0.1, and a port that cannot be had (EADDRINUSE: another
 * simulator or server holds it) rejects the start with the listen error, which carries `code` and
 * `port`, instead of surfacing later as an unhandled 'error' event that kills the process with a
 * stack trace (the scripts/*-sim.ts commands turn it into one line naming the variable to change).
 */
import type { Server } from 'http';
import type { AddressInfo } from 'net';

/** Listen on 127.0.0.1:`port` (0: any free port); resolves with the port it got. */
export function listenLocal(server: Server, port: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const failed = (err: Error) => reject(err);
    server.once('error', failed);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', failed);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
