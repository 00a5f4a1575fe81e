// The registry's schema, one migration per version. PRAGMA user_version holds
// the version reached; a migration is never edited once released, only
// followed by a new one.

/** One schema step: applied inside a transaction when user_version < version. */
export interface Migration {
  version: number;
  description: string;
  sql: string;
}

/** Every migration in order. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'the VM table (VirtualBox modifyvm settings)',
    sql: `
      CREATE TABLE vms (
        name TEXT PRIMARY KEY NOT NULL,
        memory_mib INTEGER NOT NULL CHECK (memory_mib > 0),
        default_balloon_mib INTEGER NOT NULL DEFAULT 0 CHECK (default_balloon_mib >= 0),
        page_fusion INTEGER NOT NULL DEFAULT 0 CHECK (page_fusion IN (0, 1)),
        created_at_ms INTEGER NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 2,
    description: 'automatic balloon policy settings (issue 7)',
    sql: `
      ALTER TABLE vms ADD COLUMN balloon_policy TEXT NOT NULL DEFAULT 'manual' CHECK (balloon_policy IN ('manual', 'auto'));
      ALTER TABLE vms ADD COLUMN memory_min_mib INTEGER NOT NULL DEFAULT 0 CHECK (memory_min_mib >= 0);
      ALTER TABLE vms ADD COLUMN balloon_max_mib INTEGER NOT NULL DEFAULT 0 CHECK (balloon_max_mib >= 0);
      ALTER TABLE vms ADD COLUMN memory_weight INTEGER NOT NULL DEFAULT 100 CHECK (memory_weight BETWEEN 1 AND 10000);
      ALTER TABLE vms ADD COLUMN memory_buffer_percent INTEGER NOT NULL DEFAULT 20 CHECK (memory_buffer_percent BETWEEN 0 AND 100);
    `,
  },
  {
    version: 3,
    description: 'per-VM guest tokens, stored only as a hash (issue 8)',
    // NULL: the VM has no token (auto-registered without one, demo mode).
    sql: `
      ALTER TABLE vms ADD COLUMN token_hash TEXT CHECK (token_hash IS NULL OR length(token_hash) <= 128);
    `,
  },
  {
    version: 4,
    description: "the cgroup modifyvm --cgroup adopted for the VM's guest",
    // NULL: none. The guest records under <data-dir>/guests/ are acted on only
    // where they agree with this (a record file alone is no authority).
    sql: `
      ALTER TABLE vms ADD COLUMN adopted_cgroup TEXT CHECK (adopted_cgroup IS NULL OR length(adopted_cgroup) <= 4096);
    `,
  },
];

/** The schema version this code writes. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;
