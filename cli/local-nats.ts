// The nats-server configuration of a local cluster (`rmt up`): loopback only, JetStream, and one
// nkey user per service with the permissions of shared/bus/permissions.ts. A connection without one
// of these keys is refused; a service's key lets it publish only its own events. The seeds are
// written next to the configuration (0600) and passed to the services as --bus-nkey-seed files.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nkeys } from 'nats';
import { BUS_ROLES, type BusRole, busPermissions } from '../shared/bus/permissions.js';

export interface LocalNatsConfig {
  /** The server's configuration file. */
  conf: string;
  /** The nkey seed file of each role. */
  seeds: Record<BusRole, string>;
}

const list = (xs: readonly string[]) => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`;

/** Writes nats.conf and the seeds of a server on 127.0.0.1:`port` with its store in `storeDir`. */
export function writeLocalNatsConfig(dir: string, port: number, storeDir: string): LocalNatsConfig {
  const seeds = {} as Record<BusRole, string>;
  const users: string[] = [];
  for (const role of BUS_ROLES) {
    const user = nkeys.createUser();
    const seedFile = join(dir, `${role}.nkey`);
    writeFileSync(seedFile, `${new TextDecoder().decode(user.getSeed())}\n`, { mode: 0o600 });
    seeds[role] = seedFile;
    const p = busPermissions(role);
    users.push(`    # ${role}
    {
      nkey: ${user.getPublicKey()}
      permissions: {
        publish: { allow: ${list(p.publish)} }
        subscribe: { allow: ${list(p.subscribe)} }
      }
    }`);
  }
  const conf = join(dir, 'nats.conf');
  writeFileSync(
    conf,
    `# Written by rmt up: a throwaway server for one local cluster.
listen: "127.0.0.1:${port}"
jetstream { store_dir: ${JSON.stringify(storeDir)} }
authorization {
  timeout: 5
  users: [
${users.join('\n')}
  ]
}
`,
    { mode: 0o600 },
  );
  return { conf, seeds };
}
