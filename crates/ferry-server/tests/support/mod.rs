//! Shared by the ferry-server tests that run against the test command's real PostgreSQL.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses part of it

/// A scratch schema on `FERRY_TEST_DATABASE_URL`, dropped when this goes out of scope (also
/// when the test panics). None (the test skips) when no PostgreSQL is configured, which the
/// test command (`FERRY_REQUIRE_SERVERS=1`) does not allow.
pub struct PgSchema {
    base: String,
    name: String,
    /// The database URL with this schema first in the search path.
    pub url: String,
}

impl PgSchema {
    pub fn new(prefix: &str) -> Option<PgSchema> {
        let Ok(base) = std::env::var("FERRY_TEST_DATABASE_URL") else {
            assert_ne!(
                std::env::var("FERRY_REQUIRE_SERVERS").as_deref(),
                Ok("1"),
                "FERRY_TEST_DATABASE_URL is required"
            );
            eprintln!("skipping: FERRY_TEST_DATABASE_URL is not set");
            return None;
        };
        let name = format!("{prefix}_{}", std::process::id());
        psql(&base, &format!("CREATE SCHEMA {name}"));
        let url = format!("{base}?options=-csearch_path%3D{name}");
        Some(PgSchema { base, name, url })
    }

    /// Runs `sql` in this schema and returns what psql printed (unaligned, tuples only).
    pub fn query(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([self.base.as_str(), "-q", "-c"])
            .arg(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .output();
    }
}

fn psql(url: &str, sql: &str) -> String {
    let o = std::process::Command::new("psql")
        .args([url, "-q", "-At", "-c", sql])
        .output()
        .expect("psql");
    assert!(o.status.success(), "{o:?}");
    String::from_utf8(o.stdout).unwrap()
}
