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
        version: HOST_KEYS,
        name: "host_keys",
        sql: include_str!("../migrations/sqlite/0025_host_keys.sql"),
    },
    Migration {
        version: 26,
        name: "search_terms",
        sql: include_str!("../migrations/sqlite/0026_search_terms.sql"),
    },
    Migration {
        version: 27,
        name: "decisions_order",
        sql: include_str!("../migrations/sqlite/0027_decisions_order.sql"),
    },
    Migration {
        version: SEARCH_TERMS_POSTGRES,
        name: "search_terms_postgres",
        sql: include_str!("../migrations/sqlite/0028_search_terms_postgres.sql"),
    },
    Migration {
        version: SEARCH_TEXT,
        name: "search_text",
        sql: include_str!("../migrations/sqlite/0029_search_text.sql"),
    },
    Migration {
        version: 30,
        name: "agent_claim_states",
        sql: include_str!("../migrations/sqlite/0030_agent_claim_states.sql"),
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
        version: HOST_KEYS,
        name: "host_keys",
        sql: concat!(
            include_str!("../migrations/postgres/0025_host_keys.sql"),
            include_str!("../migrations/postgres/agent_search.sql")
        ),
    },
    Migration {
        version: 26,
        name: "search_terms",
        sql: include_str!("../migrations/postgres/0026_search_terms.sql"),
    },
    Migration {
        version: 27,
        name: "decisions_order",
        sql: include_str!("../migrations/postgres/0027_decisions_order.sql"),
    },
    Migration {
        version: SEARCH_TERMS_POSTGRES,
        name: "search_terms_postgres",
        sql: include_str!("../migrations/postgres/0028_search_terms_postgres.sql"),
    },
    Migration {
        version: SEARCH_TEXT,
        name: "search_text",
        sql: concat!(
            include_str!("../migrations/postgres/0029_search_text.sql"),
            include_str!("../migrations/postgres/decision_search.sql")
        ),
    },
    Migration {
        version: 30,
        name: "agent_claim_states",
        sql: include_str!("../migrations/postgres/0030_agent_claim_states.sql"),
    },
];

/// The migration (0025) after whose SQL the runner writes every host-name key in Rust, in the
/// same transaction: [`agent_keys`] and [`computer_keys`] say what to write.
pub const HOST_KEYS: i64 = 25;

/// The migration (0028) after whose SQL PostgreSQL's runner records, in Rust and in the same
/// transaction, the trigrams of the decisions already stored (`fill_search_terms`).
pub const SEARCH_TERMS_POSTGRES: i64 = 28;

/// The migration (0029) after whose SQL PostgreSQL's runner counts the trigrams of the
/// decisions again, from the text it stores (`fill_search_terms`): until then the counts only
/// grew.
pub const SEARCH_TEXT: i64 = 29;

/// PostgreSQL's trigram indexes of the agent search, part of migration 0025 and run again at a
/// start while they are missing (`Postgres::ensure_search_index`).
pub const POSTGRES_AGENT_SEARCH: &str = include_str!("../migrations/postgres/agent_search.sql");

/// PostgreSQL's pg_trgm index of the translation search over migration 0029's stored text, part
/// of that migration and run again at a start while it is missing (`Postgres::ensure_search_index`).
pub const POSTGRES_DECISION_SEARCH: &str =
    include_str!("../migrations/postgres/decision_search.sql");

/// Migration 0025's agents: from each agent's id, host name and whether it holds a host-name claim
/// now, its key and its claim after. Where several claimants' names have one key (their claims
/// were computed by the database's `lower()`), the newest keeps it, as migration 0013 did.
pub fn agent_keys(agents: &[(i64, String, bool)]) -> Vec<(i64, String, Option<String>)> {
    use std::collections::HashMap;
    let keyed: Vec<(i64, String, bool)> = agents
        .iter()
        .map(|(id, name, claims)| (*id, ferry_core::devices::host::host_key(name), *claims))
        .collect();
    let mut newest: HashMap<&str, i64> = HashMap::new();
    for (id, key, claims) in &keyed {
        if *claims {
            let n = newest.entry(key.as_str()).or_insert(*id);
            *n = (*n).max(*id);
        }
    }
    keyed
        .iter()
        .map(|(id, key, _)| {
            let claim = (newest.get(key.as_str()) == Some(id)).then(|| key.clone());
            (*id, key.clone(), claim)
        })
        .collect()
}

/// Migration 0025's batch computers: of the stored keys, those that are not [`host_key`]'s (written
/// before by a lower case that differs: Greek final sigma), each with its new key, or none where a
/// computer with that key is already listed (the row goes: a computer is in one batch).
///
/// [`host_key`]: ferry_core::devices::host::host_key
pub fn computer_keys(computers: &[String]) -> Vec<(String, Option<String>)> {
    use ferry_core::devices::host::host_key;
    let mut taken: std::collections::HashSet<String> = computers
        .iter()
        .filter(|c| host_key(c) == **c)
        .cloned()
        .collect();
    let mut out = Vec::new();
    for c in computers {
        let key = host_key(c);
        if key != *c {
            let new = taken.insert(key.clone()).then_some(key);
            out.push((c.clone(), new));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_claimant_of_a_key_keeps_it_and_every_agent_gets_its_key() {
        let agents = vec![
            (1, "ÅSA-PC".to_string(), true),
            (2, "åsa-pc".to_string(), true),
            (3, "ÅSA-PC".to_string(), false),
            (4, "ÖREBRO-01".to_string(), true),
        ];
        assert_eq!(
            agent_keys(&agents),
            vec![
                (1, "åsa-pc".to_string(), None),
                (2, "åsa-pc".to_string(), Some("åsa-pc".to_string())),
                (3, "åsa-pc".to_string(), None),
                (4, "örebro-01".to_string(), Some("örebro-01".to_string())),
            ]
        );
    }

    #[test]
    fn batch_keys_written_by_another_lower_case_are_rewritten_once() {
        let rows = vec![
            "αθηνας".to_string(),
            "pc-1".to_string(),
            "πατρας".to_string(),
            "πατρασ".to_string(),
        ];
        assert_eq!(
            computer_keys(&rows),
            vec![
                ("αθηνας".to_string(), Some("αθηνασ".to_string())),
                ("πατρας".to_string(), None),
            ]
        );
    }
}
