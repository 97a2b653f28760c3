//! Embedded, forward-only migrations: `migrations/<backend>/NNNN_name.sql`, applied in order at
//! open, each in its own transaction, recorded in `schema_migrations`. A landed file is never edited.

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "enrolment_tokens",
        sql: include_str!("../migrations/sqlite/0002_enrolment_tokens.sql"),
    },
    Migration {
        version: 3,
        name: "devices",
        sql: include_str!("../migrations/sqlite/0003_devices.sql"),
    },
    Migration {
        version: 4,
        name: "environments",
        sql: include_str!("../migrations/sqlite/0004_environments.sql"),
    },
    Migration {
        version: 5,
        name: "env_records",
        sql: include_str!("../migrations/sqlite/0005_env_records.sql"),
    },
    Migration {
        version: 6,
        name: "operator_passwords",
        sql: include_str!("../migrations/sqlite/0006_operator_passwords.sql"),
    },
    Migration {
        version: 7,
        name: "console",
        sql: include_str!("../migrations/sqlite/0007_console.sql"),
    },
    Migration {
        version: 8,
        name: "sealed_secrets",
        sql: include_str!("../migrations/sqlite/0008_sealed_secrets.sql"),
    },
    Migration {
        version: 9,
        name: "device_identity",
        sql: include_str!("../migrations/sqlite/0009_device_identity.sql"),
    },
    Migration {
        version: 10,
        name: "sign_in",
        sql: include_str!("../migrations/sqlite/0010_sign_in.sql"),
    },
    Migration {
        version: 11,
        name: "agent_runs",
        sql: include_str!("../migrations/sqlite/0011_agent_runs.sql"),
    },
    Migration {
        version: 12,
        name: "sync_overrides",
        sql: include_str!("../migrations/sqlite/0012_sync_overrides.sql"),
    },
    Migration {
        version: 13,
        name: "agent_hostname_claim",
        sql: include_str!("../migrations/sqlite/0013_agent_hostname_claim.sql"),
    },
    Migration {
        version: 14,
        name: "device_names",
        sql: include_str!("../migrations/sqlite/0014_device_names.sql"),
    },
    Migration {
        version: 15,
        name: "batch_waves",
        sql: include_str!("../migrations/sqlite/0015_batch_waves.sql"),
    },
    Migration {
        version: 16,
        name: "agent_preflight",
        sql: include_str!("../migrations/sqlite/0016_agent_preflight.sql"),
    },
    Migration {
        version: 17,
        name: "agent_verification",
        sql: include_str!("../migrations/sqlite/0017_agent_verification.sql"),
    },
    Migration {
        version: 18,
        name: "audit_origin",
        sql: include_str!("../migrations/sqlite/0018_audit_origin.sql"),
    },
    Migration {
        version: 19,
        name: "list_search",
        sql: include_str!("../migrations/sqlite/0019_list_search.sql"),
    },
    Migration {
        version: 20,
        name: "batch_computer_names",
        sql: include_str!("../migrations/sqlite/0020_batch_computer_names.sql"),
    },
    Migration {
        version: 21,
        name: "cycle_progress",
        sql: include_str!("../migrations/sqlite/0021_cycle_progress.sql"),
    },
    Migration {
        version: 22,
        name: "drop_list_search",
        sql: include_str!("../migrations/sqlite/0022_drop_list_search.sql"),
    },
    Migration {
        version: 23,
        name: "list_sort",
        sql: include_str!("../migrations/sqlite/0023_list_sort.sql"),
    },
    Migration {
        version: 24,
        name: "search_index",
        sql: include_str!("../migrations/sqlite/0024_search_index.sql"),
    },
    Migration {
        version: 26,
        name: "search_terms",
        sql: include_str!("../migrations/sqlite/0026_search_terms.sql"),
    },
];

pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "enrolment_tokens",
        sql: include_str!("../migrations/postgres/0002_enrolment_tokens.sql"),
    },
    Migration {
        version: 3,
        name: "devices",
        sql: include_str!("../migrations/postgres/0003_devices.sql"),
    },
    Migration {
        version: 4,
        name: "environments",
        sql: include_str!("../migrations/postgres/0004_environments.sql"),
    },
    Migration {
        version: 5,
        name: "env_records",
        sql: include_str!("../migrations/postgres/0005_env_records.sql"),
    },
    Migration {
        version: 6,
        name: "operator_passwords",
        sql: include_str!("../migrations/postgres/0006_operator_passwords.sql"),
    },
    Migration {
        version: 7,
        name: "console",
        sql: include_str!("../migrations/postgres/0007_console.sql"),
    },
    Migration {
        version: 8,
        name: "sealed_secrets",
        sql: include_str!("../migrations/postgres/0008_sealed_secrets.sql"),
    },
    Migration {
        version: 9,
        name: "device_identity",
        sql: include_str!("../migrations/postgres/0009_device_identity.sql"),
    },
    Migration {
        version: 10,
        name: "sign_in",
        sql: include_str!("../migrations/postgres/0010_sign_in.sql"),
    },
    Migration {
        version: 11,
        name: "agent_runs",
        sql: include_str!("../migrations/postgres/0011_agent_runs.sql"),
    },
    Migration {
        version: 12,
        name: "sync_overrides",
        sql: include_str!("../migrations/postgres/0012_sync_overrides.sql"),
    },
    Migration {
        version: 13,
        name: "agent_hostname_claim",
        sql: include_str!("../migrations/postgres/0013_agent_hostname_claim.sql"),
    },
    Migration {
        version: 14,
        name: "device_names",
        sql: include_str!("../migrations/postgres/0014_device_names.sql"),
    },
    Migration {
        version: 15,
        name: "batch_waves",
        sql: include_str!("../migrations/postgres/0015_batch_waves.sql"),
    },
    Migration {
        version: 16,
        name: "agent_preflight",
        sql: include_str!("../migrations/postgres/0016_agent_preflight.sql"),
    },
    Migration {
        version: 17,
        name: "agent_verification",
        sql: include_str!("../migrations/postgres/0017_agent_verification.sql"),
    },
    Migration {
        version: 18,
        name: "audit_origin",
        sql: include_str!("../migrations/postgres/0018_audit_origin.sql"),
    },
    Migration {
        version: 19,
        name: "list_search",
        sql: include_str!("../migrations/postgres/0019_list_search.sql"),
    },
    Migration {
        version: 20,
        name: "batch_computer_names",
        sql: include_str!("../migrations/postgres/0020_batch_computer_names.sql"),
    },
    Migration {
        version: 21,
        name: "cycle_progress",
        sql: include_str!("../migrations/postgres/0021_cycle_progress.sql"),
    },
    Migration {
        version: 22,
        name: "drop_list_search",
        sql: include_str!("../migrations/postgres/0022_drop_list_search.sql"),
    },
    Migration {
        version: 23,
        name: "list_sort",
        sql: include_str!("../migrations/postgres/0023_list_sort.sql"),
    },
    Migration {
        version: 24,
        name: "search_index",
        sql: include_str!("../migrations/postgres/0024_search_index.sql"),
    },
    Migration {
        version: 26,
        name: "search_terms",
        sql: include_str!("../migrations/postgres/0026_search_terms.sql"),
    },
];
