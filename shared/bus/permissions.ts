// What each rmt service may publish and subscribe to on NATS: its own events and the JetStream API
// calls its bus adapter makes, nothing else. `rmt up` writes these into the local nats-server's
// configuration and k8s/tools/nats-auth.ts into the users' JWTs, so a service (or someone holding its
// credentials) cannot forge another's events: a scorer's credentials cannot announce weights or
// heartbeats, a worker's cannot write metrics. See docs/security.md for what they still allow.
import { isPersisted, STREAM_NAME, type Subject } from './subjects.js';

/** The services that connect to the bus. */
export const BUS_ROLES = ['scorer', 'learner', 'rollout', 'coordinator'] as const;
export type BusRole = (typeof BUS_ROLES)[number];

export interface BusPermissions {
  /** Subjects (NATS wildcards allowed) the role may publish to. */
  publish: string[];
  /** Subjects the role may subscribe to. */
  subscribe: string[];
}

/** Events each role publishes and subscribes to (the bus' contract, docs/bus.md). */
export const BUS_EVENTS: Record<BusRole, { publish: Subject[]; subscribe: Subject[] }> = {
  scorer: { publish: ['rmt.positions.scored'], subscribe: [] },
  learner: { publish: ['rmt.weights.published'], subscribe: [] },
  rollout: {
    publish: ['rmt.workers.heartbeat', 'rmt.difficulty.observed'],
    subscribe: ['rmt.weights.published'],
  },
  coordinator: {
    publish: ['rmt.metrics.step'],
    subscribe: ['rmt.workers.heartbeat', 'rmt.difficulty.observed'],
  },
};

const JS = '$JS.API';
/** Every service checks JetStream and the stream when it connects, and reads replies on its inboxes. */
const CONNECT = [`${JS}.INFO`, `${JS}.STREAM.INFO.${STREAM_NAME}`];
/**
 * Creating or updating the stream: the coordinator's, which owns the run (the others wait for the
 * stream when it is missing, NatsBus.connect).
 */
const STREAM_ADMIN = [`${JS}.STREAM.CREATE.${STREAM_NAME}`, `${JS}.STREAM.UPDATE.${STREAM_NAME}`];
/**
 * Consuming persisted subjects: a pull consumer on the stream. Durable consumers are created under a
 * subject that names their filter; ephemeral ones have server-chosen names, so the pull, ack, info
 * and delete subjects cannot name one consumer.
 */
const consume = (subjects: readonly Subject[]) => [
  `${JS}.CONSUMER.CREATE.${STREAM_NAME}`,
  ...subjects.map((s) => `${JS}.CONSUMER.CREATE.${STREAM_NAME}.*.${s}`),
  `${JS}.CONSUMER.DURABLE.CREATE.${STREAM_NAME}.*`,
  `${JS}.CONSUMER.INFO.${STREAM_NAME}.*`,
  `${JS}.CONSUMER.DELETE.${STREAM_NAME}.*`,
  `${JS}.CONSUMER.MSG.NEXT.${STREAM_NAME}.*`,
  `$JS.ACK.${STREAM_NAME}.>`,
];

/** A role's NATS permissions. */
export function busPermissions(role: BusRole): BusPermissions {
  const ev = BUS_EVENTS[role];
  const persisted = ev.subscribe.filter((s) => isPersisted(s));
  return {
    publish: [
      ...ev.publish,
      ...CONNECT,
      ...(role === 'coordinator' ? STREAM_ADMIN : []),
      ...(persisted.length > 0 ? consume(persisted) : []),
    ],
    // Persisted subjects arrive on the inbox of the pull request, core ones on their own subject.
    subscribe: [...ev.subscribe.filter((s) => !isPersisted(s)), '_INBOX.>'],
  };
}
