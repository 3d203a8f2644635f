// A request body read whole for a plugin (readBody), up to a limit, beyond which the answer is
// 413; what a plugin read is what goes upstream.
import type { IncomingMessage } from 'node:http';

export const MAX_BUFFERED_BODY = 8 * 1024 * 1024;

export class PayloadTooLarge extends Error {}

/** Reads `holder.req`'s body whole; the first body read or set stays in `holder.bufferedBody`. */
export function bufferBody(holder: { readonly req: IncomingMessage; bufferedBody: Buffer | null }): Promise<Buffer> {
  const req = holder.req;
  const declared = Number(req.headers['content-length'] ?? 0);
  return new Promise<Buffer>((resolve, reject) => {
    if (declared > MAX_BUFFERED_BODY) return reject(new PayloadTooLarge());
    if (req.readableEnded || (declared === 0 && req.headers['transfer-encoding'] === undefined)) {
      holder.bufferedBody ??= Buffer.alloc(0);
      return resolve(holder.bufferedBody);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BUFFERED_BODY) {
        cleanup();
        req.resume();
        reject(new PayloadTooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      const body = Buffer.concat(chunks, size);
      holder.bufferedBody ??= body;
      resolve(body);
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}
