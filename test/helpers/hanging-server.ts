// A server that accepts TCP connections, reads what comes, and never answers:
// the worst a network peer can do to a client without a deadline.
import { once } from 'node:events';
import { createServer as createTcpServer, type Socket } from 'node:net';

/** A TCP server that accepts connections, reads what comes, and never answers. */
export async function hangingServer() {
  const sockets = new Set<Socket>();
  let open = 0;
  let maxOpen = 0;
  let accepted = 0;
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    accepted++;
    maxOpen = Math.max(maxOpen, ++open);
    socket.on('data', () => undefined);
    socket.on('close', () => {
      open--;
      sockets.delete(socket);
    });
    socket.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    stats: () => ({ open, maxOpen, accepted }),
    close: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}
