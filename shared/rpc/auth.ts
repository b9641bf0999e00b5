// Bearer-token authentication of gRPC calls, for deployments that do not want mutual TLS: every
// server that has a token refuses calls without it (UNAUTHENTICATED) in an interceptor, before any
// handler runs; every client that has one sends it as `authorization: Bearer <token>`. The health
// service stays open so that probes (the kubelet's gRPC probe sends no metadata) still work: it tells
// a caller only whether the server is up. See docs/security.md.
import { createHash, timingSafeEqual } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import {
  InterceptingCall,
  type Interceptor,
  Metadata,
  ServerInterceptingCall,
  type ServerInterceptor,
  status as Status,
} from '@grpc/grpc-js';
import { encodeStatusDetails, STATUS_DETAILS_KEY } from './status-details.js';

/** The metadata key the token travels in (HTTP's, so that proxies and other clients know it). */
export const AUTH_METADATA_KEY = 'authorization';
/** Token files are a line of text; anything larger is not one. */
export const MAX_TOKEN_FILE_BYTES = 4096;
/** Shorter tokens are guessable; `rmt up` and `openssl rand -hex 32` make 64 characters. */
export const MIN_TOKEN_CHARS = 32;
/** Services whose calls need no token: the standard health service, for probes. */
export const UNAUTHENTICATED_SERVICES: readonly string[] = ['grpc.health.v1.Health'];

/**
 * The token in a file: its content without surrounding whitespace. Errors name the file and the
 * rule broken, never the content.
 */
export function readTokenFile(path: string, what = '--auth-token-file'): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new Error(`${what}: cannot open ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`${what}: ${path} is not a file`);
    if (st.size > MAX_TOKEN_FILE_BYTES) {
      throw new Error(
        `${what}: ${path} has ${st.size} bytes; a token file holds at most ${MAX_TOKEN_FILE_BYTES}`,
      );
    }
    const buf = Buffer.alloc(st.size);
    const n = readSync(fd, buf, 0, st.size, 0);
    return checkToken(buf.subarray(0, n).toString('utf8').trim(), `${what}: ${path}`);
  } finally {
    closeSync(fd);
  }
}

/** The token if it is usable: long enough, printable ASCII without spaces (it travels in a header). */
export function checkToken(token: string, where = 'token'): string {
  if (token.length < MIN_TOKEN_CHARS) {
    throw new Error(
      `${where}: the token has ${token.length} characters; at least ${MIN_TOKEN_CHARS} are needed`,
    );
  }
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new Error(`${where}: the token must be one line of printable ASCII without spaces`);
  }
  return token;
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/**
 * Whether `presented` is `expected`, in time that depends on neither (both are hashed first, so that
 * their lengths do not show either).
 */
export function tokenMatches(expected: string, presented: string): boolean {
  return timingSafeEqual(digest(expected), digest(presented));
}

/** The token a call's metadata presents ("" when none, or not as `Bearer <token>`). */
export function presentedToken(metadata: Metadata): string {
  const v = metadata.get(AUTH_METADATA_KEY)[0];
  if (typeof v !== 'string') return '';
  const m = /^Bearer ([\x21-\x7e]+)$/.exec(v);
  return m ? m[1]! : '';
}

/** A server interceptor that ends every call without the token with UNAUTHENTICATED. */
export function tokenServerInterceptor(token: string): ServerInterceptor {
  const expected = checkToken(token);
  return (method, call) => {
    const service = method.path.split('/')[1] ?? '';
    if (UNAUTHENTICATED_SERVICES.includes(service)) return new ServerInterceptingCall(call);
    let refused = false;
    return new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (md, pass) => {
            if (tokenMatches(expected, presentedToken(md))) {
              pass(md);
              return;
            }
            refused = true;
            // The reason without the token presented or expected; an ErrorInfo as on every other
            // refusal, so clients branch on the reason rather than on the message.
            const missing = md.get(AUTH_METADATA_KEY).length === 0;
            const message = missing ? 'no bearer token' : 'wrong bearer token';
            const trailer = new Metadata();
            trailer.set(
              STATUS_DETAILS_KEY,
              Buffer.from(
                encodeStatusDetails({
                  code: Status.UNAUTHENTICATED,
                  message,
                  reason: missing ? 'TOKEN_MISSING' : 'TOKEN_WRONG',
                  metadata: {},
                }),
              ),
            );
            call.sendStatus({ code: Status.UNAUTHENTICATED, details: message, metadata: trailer });
          },
          // A refused call's messages never reach the handler.
          onReceiveMessage: (msg, pass) => {
            if (!refused) pass(msg);
          },
          onReceiveHalfClose: (pass) => {
            if (!refused) pass();
          },
        });
      },
    });
  };
}

/** A client interceptor that adds `authorization: Bearer <token>` to every call. */
export function tokenClientInterceptor(token: string): Interceptor {
  const value = `Bearer ${checkToken(token)}`;
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start: (metadata, listener, next) => {
        metadata.set(AUTH_METADATA_KEY, value);
        next(metadata, listener);
      },
    });
}
