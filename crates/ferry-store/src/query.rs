//! SQL text shared by the store's areas. Placeholders are written `?` (PostgreSQL's adapter numbers
//! them); everything else is the dialect SQLite and PostgreSQL share (`ON CONFLICT`, `RETURNING`,
//! `CAST`, integer epoch ms).

use crate::backend::Val;
use crate::{
    AgentQuery, AgentSort, AuditEntry, AuditQuery, DecisionQuery, DecisionSort, Direction,
    FailedQuery, FailedSort, LogQuery, SortValue, codec,
};
pub(crate) use ferry_core::devices::host::host_key;

/// Inserts or replaces a named document of `table` (name, body, created, updated).
pub fn put_document(table: &str) -> String {
    format!(
        "INSERT INTO {table} (name, body, created_at, updated_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at"
    )
}

/// Replaces a named document of `table` whose body is still the one read (name, new body,
/// updated, old body in the parameters: `new`, `now`, `name`, `old`).
pub fn create_document(table: &str) -> String {
    format!(
        "INSERT INTO {table} (name, body, created_at, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING"
    )
}

pub fn swap_document(table: &str) -> String {
    format!("UPDATE {table} SET body = ?, updated_at = ? WHERE name = ? AND body = ?")
}

/// An audit line; returns its id.
pub const INSERT_AUDIT: &str = "INSERT INTO audit (at, actor, tenant, action, subject, detail, address, request_id) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id";

/// The parameters of [`INSERT_AUDIT`].
pub fn audit_params(e: &AuditEntry) -> Vec<Val<'_>> {
    crate::params![
        e.at,
        &e.actor,
        &e.tenant,
        &e.action,
        &e.subject,
        &e.detail,
        &e.address,
        &e.request_id
    ]
    .to_vec()
}

/// The columns `audit_row` decodes.
pub const AUDIT_COLS: &str = "id, at, actor, tenant, action, subject, detail, address, request_id";

/// Deletes a named document of `table`.
pub fn delete_document(table: &str) -> String {
    format!("DELETE FROM {table} WHERE name = ?")
}

pub const DEC_COLS: &str = "profile, kind, source_id, status, rule, source_name, source_upn, source_mail, source_sid, source_uid, source_gid, \
     target_id, target_name, target_upn, target_mail, target_sid, target_uid, target_gid, candidates, first_cycle, changed_cycle";

pub const OBJ_COLS: &str =
    "directory, kind, id, dn, name, upn, mail, sid, uid_number, gid_number, members, attrs";

pub const CYCLE_COLS: &str = "id, profile, trigger, slot, server, status, phase, started_at, finished_at, counts, plan_hash, export, error, progress";

pub const LOG_COLS: &str = "id, at, cycle_id, profile, directory, level, code, object_kind, object_id, object_name, message";

/// The condition that an agent is one of a batch's computers (one parameter, the batch): its
/// host name's key among the batch's keys, both written by [`host_key`] (migration 0025), a join
/// of the two (key, …) indexes.
pub const IN_BATCH: &str = "host_key IN (SELECT computer FROM batch_computers WHERE batch = ?)";

/// `SELECT … FROM agents WHERE …` (or `SELECT count(*)`) for a query, on backend `B`: sorted by
/// `q.sort` then id, after `q.after` (keyset paging) when given.
pub fn agents<B: crate::backend::Backend>(
    q: &AgentQuery,
    count: bool,
) -> (String, Vec<Val<'static>>) {
    // A batch's page sorted by host name is a join driven by the batch's computers in key
    // order (`Backend::BATCH_AGENTS`); every other listing reads the agents, a batch's through
    // `IN_BATCH`.
    let by_batch_host = !count && q.batch.is_some() && q.sort == AgentSort::Hostname;
    let mut sql = if by_batch_host {
        select_all(AGENT_COLS, B::BATCH_AGENTS, false)
    } else {
        select_all(AGENT_COLS, "agents", count)
    };
    let mut vals = Vec::new();
    if let Some(term) = q.search.as_deref().filter(|t| !t.is_empty()) {
        // The host name's key and the device id in lower case: PostgreSQL's trigram indexes of
        // migration 0025 are on exactly these; SQLite scans (fast enough at 100,000 agents).
        sql.push_str(" AND (host_key LIKE ? ESCAPE '\\' OR lower(device_id) LIKE ? ESCAPE '\\')");
        vals.push(Val::text(codec::like_pattern(&host_key(term))));
        vals.push(Val::text(codec::like_pattern(term)));
    }
    if let Some(s) = &q.state {
        sql.push_str(" AND state = ?");
        vals.push(Val::text(s.clone()));
    }
    if let Some(b) = &q.batch {
        if by_batch_host {
            sql.push_str(" AND bc.batch = ?");
        } else {
            sql.push_str(&format!(" AND {IN_BATCH}"));
        }
        vals.push(Val::text(b.clone()));
    }
    if let Some(t) = q.silent_before {
        sql.push_str(" AND last_contact < ?");
        vals.push(Val::Int(t));
    }
    if !count {
        let value = match q.sort {
            AgentSort::Id => None,
            // The batch's key, equal to the agent's, and the one the walked index is on.
            AgentSort::Hostname if by_batch_host => Some("bc.computer".to_string()),
            AgentSort::Hostname => Some("host_key".to_string()),
            AgentSort::State => Some(format!("state{}", B::BINARY)),
            AgentSort::LastContact => Some("last_contact".to_string()),
        };
        let after = q.after.map(|id| (q.after_value.clone(), id));
        let offset = if q.after.is_some() { 0 } else { q.offset };
        if by_batch_host && let Some((Some(SortValue::Text(v)), _)) = &after {
            // The row value below does not bound the walked index; this does.
            bound(
                &mut sql,
                &mut vals,
                "bc.computer",
                Val::text(v.clone()),
                q.direction,
            );
        }
        sorted_page(
            &mut sql,
            &mut vals,
            value.as_deref(),
            &["id"],
            after,
            q.direction,
        );
        page(&mut sql, &mut vals, q.limit, offset);
    }
    (sql, vals)
}

/// A sorted listing's keyset condition and order: by the expression `value` (none: by the key
/// alone), then by the `key` columns, the whole order reversed for [`Direction::Desc`]. With
/// `after` (the sort value and the last key column's value of the previous page's last row) only
/// the rows past it: a row-value comparison, which both planners take to a range of an index on
/// the same expressions (migration 0023), so that a page deep in a million rows reads only its
/// own rows. `key` has one column here; listings keyed by several write their own.
fn sorted_page(
    sql: &mut String,
    vals: &mut Vec<Val<'static>>,
    value: Option<&str>,
    key: &[&str],
    after: Option<(Option<SortValue>, i64)>,
    dir: Direction,
) {
    let cols: Vec<&str> = value.into_iter().chain(key.iter().copied()).collect();
    if let Some((v, id)) = after {
        let mut marks = Vec::new();
        if let Some(expr) = value {
            // A cursor without a value in a sorted listing is refused by the API; here it
            // compares as NULL (no row), never as another row's place.
            let v = match v {
                Some(SortValue::Int(i)) => Val::Int(i),
                Some(SortValue::Text(t)) => Val::text(t),
                None => Val::Null,
            };
            if expr.contains('(') {
                bound(sql, vals, expr, v.clone(), dir);
            }
            vals.push(v);
            marks.push("?");
        }
        marks.push("?");
        vals.push(Val::Int(id));
        sql.push_str(&format!(
            " AND ({}) {} ({})",
            cols.join(", "),
            if dir.is_desc() { "<" } else { ">" },
            marks.join(", ")
        ));
    }
    order_by(sql, &cols, dir);
}

/// `expr >= ?` (`<=` descending): implied by the row-value comparison that follows it, and
/// written out for a sort on an expression, because SQLite takes a row value to an index range
/// only over plain columns; over an expression index (`lower(hostname)`, `coalesce(address, '')`)
/// it walked the index from its start, a page in the middle reading half the entries. Not for
/// plain columns: there the bound would be the range instead of the row value (a page in the
/// middle of one state's rows read them from the state's first).
fn bound(
    sql: &mut String,
    vals: &mut Vec<Val<'static>>,
    expr: &str,
    v: Val<'static>,
    dir: Direction,
) {
    sql.push_str(&format!(
        " AND {expr} {} ?",
        if dir.is_desc() { "<=" } else { ">=" }
    ));
    vals.push(v);
}

/// ` ORDER BY` the columns, each descending for [`Direction::Desc`].
fn order_by(sql: &mut String, cols: &[&str], dir: Direction) {
    let desc = if dir.is_desc() { " DESC" } else { "" };
    let parts: Vec<String> = cols.iter().map(|c| format!("{c}{desc}")).collect();
    sql.push_str(" ORDER BY ");
    sql.push_str(&parts.join(", "));
}

/// A page of `limit` rows (all rows when it is 0 or less), `offset` rows in.
fn page(sql: &mut String, vals: &mut Vec<Val<'static>>, limit: i64, offset: i64) {
    if limit > 0 {
        sql.push_str(" LIMIT ? OFFSET ?");
        vals.push(Val::Int(limit));
        vals.push(Val::Int(offset.max(0)));
    }
}

/// A count query of [`select_all`] (`SELECT count(*) FROM t WHERE …`) that stops at `cap` rows:
/// the rows are only looked for until there are that many.
pub fn count_upto(
    sql: String,
    mut vals: Vec<Val<'static>>,
    cap: i64,
) -> (String, Vec<Val<'static>>) {
    let rest = sql
        .strip_prefix("SELECT count(*) FROM ")
        .expect("a count query of select_all");
    vals.push(Val::Int(cap));
    (
        format!("SELECT count(*) FROM (SELECT 1 FROM {rest} LIMIT ?) capped"),
        vals,
    )
}

/// `SELECT cols FROM table WHERE 1=1` (`count(*)` for `cols` when `count`), for conditions to
/// follow.
fn select_all(cols: &str, table: &str, count: bool) -> String {
    let cols = if count { "count(*)" } else { cols };
    format!("SELECT {cols} FROM {table} WHERE 1=1")
}

/// Agents in each state, of one batch or of all.
pub fn agent_states(batch: Option<&str>) -> (String, Vec<Val<'static>>) {
    match batch {
        Some(b) => (
            format!(
                "SELECT state, count(*) FROM agents WHERE {IN_BATCH} GROUP BY state ORDER BY state"
            ),
            vec![Val::text(b)],
        ),
        None => (
            "SELECT state, count(*) FROM agents GROUP BY state ORDER BY state".into(),
            vec![],
        ),
    }
}

/// The newest event of each listed agent.
pub fn latest_events_of(agents: &[i64]) -> (String, Vec<Val<'static>>) {
    let marks = vec!["?"; agents.len()].join(", ");
    (
        format!(
            "SELECT agent_id, run, received_at, at, step, status, message, progress FROM agent_events \
             WHERE id IN (SELECT MAX(id) FROM agent_events WHERE agent_id IN ({marks}) GROUP BY agent_id)"
        ),
        agents.iter().map(|&a| Val::Int(a)).collect(),
    )
}

/// The shortest term the backends' substring indexes serve (a trigram); shorter terms are
/// answered by a scan ([`decisions`]), still correct, slower at a million entries.
pub const INDEXED_TERM_CHARS: usize = 3;

/// The columns a translation search looks in: names, UPNs, mail and SIDs of both sides (SQLite's
/// `ferry_holds` takes them; PostgreSQL's stored text, migration 0029, joins them).
const SEARCHED: [&str; 8] = [
    "source_name",
    "source_upn",
    "source_mail",
    "source_sid",
    "target_name",
    "target_upn",
    "target_mail",
    "target_sid",
];

/// How [`decisions_by`] looks for a search term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchBy {
    /// The backend's index kept in step by the database ([`Backend::DECISION_SEARCH`],
    /// PostgreSQL's pg_trgm), or a scan where there is none.
    Backend,
    /// SQLite's index filled outside the cycle (migration 0024), whole for the profiles searched
    /// (the caller checked, in the same read transaction): the candidates of this FTS5 query
    /// (`search_index::rarest`, or for a term of one or two characters `search_index::any_of`),
    /// each confirmed by the scan's condition on the row's current values; empty: no trigram of
    /// the index holds the term, nothing is found.
    Deferred(String),
    /// A scan (SQLite's deferred index not whole yet).
    Scan,
    /// A term of one or two characters on PostgreSQL: the decisions whose searched text matches
    /// any of these `LIKE` patterns (`search_index::short_patterns`, from the trigrams of its
    /// vocabulary that contain the term, migration 0028, [`terms_containing`]), each through
    /// [`Backend::DECISION_SEARCH`] (pg_trgm reads the trigrams of a pattern), then confirmed by
    /// the scan's condition; empty: no value holds the term, nothing is found.
    AnyOf(Vec<String>),
}

/// The trigrams of the search vocabulary (SQLite: migration 0026, PostgreSQL: 0028) that contain
/// a term of one or two characters folded by the backend ([`Backend::FOLD_TERM`]), in order, up
/// to a limit (parameters: the term twice, the limit); with how many entries hold each
/// where the vocabulary counts them (PostgreSQL; `0` on SQLite, whose FTS5 index is asked).
/// Every trigram when the folded term is longer than three characters (a fold that lengthens
/// it): no trigram can contain it, and the many then make the search scan.
pub fn terms_containing<B: crate::backend::Backend>() -> String {
    format!(
        "SELECT term, {entries} FROM decisions_search_terms WHERE {instr}(term, {f}) > 0 \
         OR length({f}) > 3 ORDER BY term LIMIT ?",
        entries = if B::DEFERRED_SEARCH { "0" } else { "entries" },
        instr = B::INSTR,
        f = B::FOLD_TERM,
    )
}

/// Where a listing sorted on a column of migration 0027 ([`DecisionSort::ordered`]) reads its
/// order from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ordered {
    /// `decisions_order` (its columns named `o_…`), joined to the decisions by key: on
    /// PostgreSQL a view over `decisions`, whose indexes serve it; on SQLite the indexer's table,
    /// whole for the profiles listed (the caller checked, in the same read transaction).
    Table,
    /// The decisions' own values: every row the filters find, sorted (SQLite's table not whole).
    Scan,
}

/// [`decisions_by`] with the backend's own index ([`SearchBy::Backend`]) and order (a backend
/// that fills nothing after the cycle has `decisions_order` whole at all times).
pub fn decisions<B: crate::backend::Backend>(
    q: &DecisionQuery,
    count: bool,
) -> (String, Vec<Val<'static>>) {
    decisions_by::<B>(q, count, SearchBy::Backend, own_order::<B>())
}

/// Where backend `B` reads a listing's order without asking: `decisions_order` where the
/// backend keeps it itself (PostgreSQL's view), the decisions otherwise (SQLite's table is
/// read only when the caller has checked it is whole).
pub fn own_order<B: crate::backend::Backend>() -> Ordered {
    if B::DEFERRED_SEARCH {
        Ordered::Scan
    } else {
        Ordered::Table
    }
}

/// `SELECT … FROM decisions WHERE …` (or `SELECT count(*)`) for a query, on backend `B`: a term
/// of [`INDEXED_TERM_CHARS`] or more goes through an index as `by` says, a shorter one scans.
/// Listed in (profile, sort value, kind, source id) order, after `q.after` when given (keyset
/// paging: an index's order, no `OFFSET`); a sort on a column of migration 0027 reads its order
/// as `ordered` says.
pub fn decisions_by<B: crate::backend::Backend>(
    q: &DecisionQuery,
    count: bool,
    by: SearchBy,
    ordered: Ordered,
) -> (String, Vec<Val<'static>>) {
    // Through `decisions_order`, the key columns filtered and ordered are its own (`o_profile`,
    // …), so that its index (profile, status, value, kind, source id) serves the page.
    let table = !count && q.sort.ordered() && ordered == Ordered::Table;
    let key = |c: &str| {
        if table {
            format!("o_{c}")
        } else {
            c.to_string()
        }
    };
    let mut vals = Vec::new();
    // A page of a short term's candidates (at most `search_index::SHORT_CAP` entries' worth,
    // `terms_containing`) read from the index first and sorted after: given the condition among
    // the others, PostgreSQL walked the key order and tested every decision up to the page's
    // last match (50,000 for `n9`, 290 ms; 17 ms so).
    let fenced = match (&by, B::DECISION_SEARCH) {
        (SearchBy::AnyOf(terms), Some(index)) if !count && !table && !terms.is_empty() => {
            let any: Vec<&str> = terms.iter().map(|_| index).collect();
            vals.extend(terms.iter().map(|t| Val::text(t.clone())));
            Some(format!(
                "(SELECT * FROM decisions WHERE {} OFFSET 0) decisions",
                any.join(" OR ")
            ))
        }
        _ => None,
    };
    let by = if fenced.is_some() {
        SearchBy::Backend
    } else {
        by
    };
    let mut sql = select_all(
        DEC_COLS,
        match &fenced {
            Some(from) => from,
            None if table => B::ORDER_JOIN,
            None => "decisions",
        },
        count,
    );
    if let Some(p) = &q.profile {
        sql.push_str(&format!(" AND {} = ?", key("profile")));
        vals.push(Val::text(p.clone()));
    } else if let Some(each) = B::EACH_PROFILE
        && q.status.is_some()
        && !table
        && fenced.is_none()
        && !matches!(by, SearchBy::Deferred(_) | SearchBy::AnyOf(_))
        && (count || q.after.is_none())
    {
        // A scan of one status across profiles: ranged profile by profile
        // ([`Backend::EACH_PROFILE`]). Not a page after a cursor, whose row value ranges the
        // primary key from the cursor on (given the profiles, SQLite read every row of the
        // cursor's profile before it: 150 ms deep in a million); nor the index's candidates,
        // each read by rid.
        sql.push_str(&format!(" AND {each}"));
    }
    if let Some(s) = q.status {
        sql.push_str(&format!(" AND {} = ?", key("status")));
        vals.push(Val::text(s.as_str()));
    }
    if let Some(k) = q.kind {
        // Through `decisions_order`, whose indexes hold the kind after the value: a filter,
        // not a range ([`Backend::FILTER_ONLY`](crate::backend::Backend::FILTER_ONLY)).
        if table {
            sql.push_str(&format!(" AND {}o_kind = ?", B::FILTER_ONLY));
        } else {
            sql.push_str(" AND kind = ?");
        }
        vals.push(Val::text(k.as_str()));
    }
    if let Some(term) = q.search.as_deref().filter(|t| !t.is_empty()) {
        if term.contains(['\n', '\0']) {
            // The index joins a decision's values with line feeds, and no single value holds
            // one: such a term matches nothing, here as in a scan. Nor one with a NUL, which
            // SQLite's search folds to a line feed (`ferry_fold`) and PostgreSQL stores in no
            // value (nor takes as a parameter).
            sql.push_str(" AND 1 = 0");
        } else {
            search_condition::<B>(&mut sql, &mut vals, term, &by);
        }
    }
    if count {
        return (sql, vals);
    }
    let value = decision_sort::<B>(q.sort, table);
    let within = q
        .after
        .as_ref()
        .is_some_and(|a| q.profile.as_deref() == Some(a.profile.as_str()));
    let (kind, source_id) = (key("kind"), key("source_id"));
    let mut cols: Vec<&str> = Vec::new();
    let profile = key("profile");
    if !within {
        cols.push(&profile);
    }
    cols.extend(value.as_deref());
    cols.extend([kind.as_str(), source_id.as_str()]);
    if let Some(a) = &q.after {
        // Row values, which both planners take to an index range; spelled out as `OR`s,
        // PostgreSQL walked the index from its start (3.2 s for a middle page at 1M). Within one
        // profile (the API reads each profile's part on its own) the comparison leaves the
        // profile out, so that `decisions_status` (profile, status, kind, source_id) — or, for a
        // value, migration 0023's or 0027's index with the value before the kind — serves it.
        // A value of the page's last row may hold a NUL where the backend stores one (SQLite: a
        // directory's value carried it), and the next page must go on after it. Where no value
        // can (PostgreSQL, which refuses one as a parameter), the cursor names no row the server
        // wrote: NULL, which finds no row past it, rather than an error.
        let text = |t: &String| {
            if !B::TEXT_HOLDS_NUL && t.contains('\0') {
                Val::Null
            } else {
                Val::text(t.clone())
            }
        };
        if !within {
            vals.push(text(&a.profile));
        }
        if value.is_some() {
            // A cursor without the sort value is refused by the API; NULL finds no row, and so
            // does a rule's position that is not a number. (The sorts here are plain columns, or
            // in a scan expressions no index serves, which both planners range by the row value.)
            vals.push(match (&a.value, q.sort) {
                (None, _) => Val::Null,
                (Some(v), DecisionSort::Rule) => v.parse().map_or(Val::Null, Val::Int),
                (Some(v), _) => text(v),
            });
        }
        vals.push(Val::text(a.kind.as_str()));
        vals.push(text(&a.source_id));
        sql.push_str(&format!(
            " AND ({}) {} ({})",
            cols.join(", "),
            if q.direction.is_desc() { "<" } else { ">" },
            vec!["?"; cols.len()].join(", ")
        ));
    }
    if within {
        // One profile's rows: the profile in the order too, which the indexes begin with.
        cols.insert(0, &profile);
    }
    order_by(&mut sql, &cols, q.direction);
    page(
        &mut sql,
        &mut vals,
        q.limit,
        if q.after.is_some() { 0 } else { q.offset },
    );
    (sql, vals)
}

/// The expression a decision listing sorts on before its key, on backend `B` (none for the key's
/// own order): the expressions migration 0023 indexes, or migration 0027's `decisions_order`
/// columns (`table`), or the values they hold (a missing text as empty, no rule as -1) when it is
/// not read.
fn decision_sort<B: crate::backend::Backend>(sort: DecisionSort, table: bool) -> Option<String> {
    let text = |c: &str| {
        Some(if table {
            format!("o_{c}")
        } else {
            format!("coalesce({c}, ''){}", B::BINARY)
        })
    };
    match sort {
        DecisionSort::Kind => None,
        DecisionSort::Status => Some("status".into()),
        DecisionSort::SourceName => Some(format!("source_name{}", B::BINARY)),
        DecisionSort::TargetName => text("target_name"),
        DecisionSort::SourceSid => text("source_sid"),
        DecisionSort::TargetSid => text("target_sid"),
        DecisionSort::Rule => Some(
            if table {
                "o_rule"
            } else {
                "coalesce(rule, -1)"
            }
            .into(),
        ),
    }
}

/// The search part of [`decisions_by`]: ` AND …` for a term (no line feed in it).
fn search_condition<B: crate::backend::Backend>(
    sql: &mut String,
    vals: &mut Vec<Val<'static>>,
    term: &str,
    by: &SearchBy,
) {
    let long = term.chars().count() >= INDEXED_TERM_CHARS;
    if let (SearchBy::Backend, Some(index), true) = (by, B::DECISION_SEARCH, long) {
        // The index's condition is the match itself (pg_trgm rechecks its candidates).
        sql.push_str(" AND ");
        sql.push_str(index);
        vals.push(Val::text(B::search_param(term)));
        return;
    }
    if let (SearchBy::AnyOf(terms), Some(index)) = (by, B::DECISION_SEARCH) {
        if terms.is_empty() {
            // No trigram of the vocabulary holds the (short) term: no value does.
            sql.push_str(" AND 1 = 0");
            return;
        }
        // The pg_trgm index's candidates for each trigram, then the scan's condition (below).
        let any: Vec<&str> = terms.iter().map(|_| index).collect();
        sql.push_str(&format!(" AND ({})", any.join(" OR ")));
        vals.extend(terms.iter().map(|t| Val::text(t.clone())));
    }
    if let SearchBy::Deferred(m) = by {
        if m.is_empty() {
            // No trigram of the index holds the (short) term: no value does.
            sql.push_str(" AND 1 = 0");
            return;
        }
        // The index's candidates, then the scan's condition on each (below): stale entries drop.
        sql.push_str(" AND ");
        sql.push_str(crate::search_index::CANDIDATES);
        vals.push(Val::text(m.clone()));
    }
    if let Some(text) = B::SEARCH_TEXT {
        // The values folded and joined by line feeds, stored: the term (no line feed in it) is
        // inside the text exactly when it is inside one of them. Tested by position, not
        // `LIKE`: this is the scan's condition (the index's, for a long term, is above), and
        // pg_trgm offers its index for any `LIKE`, which for a term of fewer than three
        // characters it reads whole. Where PostgreSQL's statistics made a 1-character term
        // look rare it took that path: `ë` 474–698 ms against 37–71 ms in other runs.
        sql.push_str(&format!(" AND {}({text}, {}) > 0", B::INSTR, B::FOLD_TERM));
        vals.push(Val::text(term.to_string()));
        return;
    }
    let pat = B::search_param(term);
    if let Some(holds) = B::HOLDS {
        sql.push_str(&format!(" AND {holds}(?, {})", SEARCHED.join(", ")));
        vals.push(Val::text(term.to_lowercase()));
        return;
    }
    let parts: Vec<String> = SEARCHED
        .iter()
        .map(|c| format!("{}({c}) LIKE {} ESCAPE '\\'", B::FOLD, B::FOLD_TERM))
        .collect();
    sql.push_str(&format!(" AND ({})", parts.join(" OR ")));
    vals.extend(SEARCHED.iter().map(|_| Val::text(pat.clone())));
}

/// How many log lines a query finds in all (its `before_id` and `limit` aside): the total a
/// page of [`logs`] is part of.
pub fn count_logs(q: &LogQuery) -> (String, Vec<Val<'static>>) {
    let (filter, vals) = log_filter(q);
    (format!("SELECT count(*) FROM logs WHERE 1=1{filter}"), vals)
}

/// The conditions of a log query but its page (`before_id`).
fn log_filter(q: &LogQuery) -> (String, Vec<Val<'static>>) {
    let mut sql = String::new();
    let mut vals = Vec::new();
    if let Some(p) = &q.profile {
        sql.push_str(" AND profile = ?");
        vals.push(Val::text(p.clone()));
    }
    if let Some(c) = q.cycle_id {
        sql.push_str(" AND cycle_id = ?");
        vals.push(Val::Int(c));
    }
    if let Some(l) = q.min_level {
        let levels: &[&str] = match l {
            ferry_core::plan::Level::Info => &["info", "warning", "error"],
            ferry_core::plan::Level::Warning => &["warning", "error"],
            ferry_core::plan::Level::Error => &["error"],
        };
        sql.push_str(&format!(
            " AND level IN ({})",
            vec!["?"; levels.len()].join(", ")
        ));
        vals.extend(levels.iter().map(|l| Val::text(*l)));
    }
    if let Some(o) = &q.object_id {
        sql.push_str(" AND object_id = ?");
        vals.push(Val::text(o.clone()));
    }
    (sql, vals)
}

/// A page of log lines, newest first, below `before_id` when given (keyset paging by id).
pub fn logs(q: &LogQuery) -> (String, Vec<Val<'static>>) {
    let (filter, mut vals) = log_filter(q);
    let mut sql = format!("SELECT {LOG_COLS} FROM logs WHERE 1=1{filter}");
    if q.oldest_first {
        if let Some(a) = q.after_id {
            sql.push_str(" AND id > ?");
            vals.push(Val::Int(a));
        }
        sql.push_str(" ORDER BY id LIMIT ?");
    } else {
        if let Some(b) = q.before_id {
            sql.push_str(" AND id < ?");
            vals.push(Val::Int(b));
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
    }
    vals.push(Val::Int(if q.limit > 0 { q.limit } else { 1000 }));
    (sql, vals)
}

/// A page of audit lines (or their `count(*)`, the page aside): by id (the order they were
/// recorded in), newest first when asked, after `q.after` in that order. `audit_tenant`,
/// `audit_at` and migration 0023's (action, id) and (actor, id) serve the filters.
pub fn audit(q: &AuditQuery, count: bool) -> (String, Vec<Val<'static>>) {
    let mut sql = select_all(AUDIT_COLS, "audit", count);
    let mut vals = Vec::new();
    for (col, v) in [
        ("tenant", &q.tenant),
        ("action", &q.action),
        ("actor", &q.actor),
    ] {
        if let Some(v) = v {
            sql.push_str(&format!(" AND {col} = ?"));
            vals.push(Val::text(v.clone()));
        }
    }
    if let Some(t) = q.since {
        sql.push_str(" AND at >= ?");
        vals.push(Val::Int(t));
    }
    if count {
        return (sql, vals);
    }
    let dir = if q.newest_first {
        Direction::Desc
    } else {
        Direction::Asc
    };
    sorted_page(
        &mut sql,
        &mut vals,
        None,
        &["id"],
        q.after.map(|a| (None, a)),
        dir,
    );
    page(&mut sql, &mut vals, q.limit, 0);
    (sql, vals)
}

/// The columns [`failed_comms`] lists.
pub const FAILED_COLS: &str = "id, at, address, code, reason, agent_id, device_id, count, first_at";

/// A page of refused communications (or their `count(*)`), on backend `B`: sorted by `q.sort`
/// then id, after `q.after`. Migration 0023 indexes (at, id) and (address, id).
pub fn failed_comms<B: crate::backend::Backend>(
    q: &FailedQuery,
    count: bool,
) -> (String, Vec<Val<'static>>) {
    let mut sql = select_all(FAILED_COLS, "failed_comms", count);
    let mut vals = Vec::new();
    if let Some(c) = &q.code {
        sql.push_str(" AND code = ?");
        vals.push(Val::text(c.clone()));
    }
    if count {
        return (sql, vals);
    }
    let value = match q.sort {
        FailedSort::At => "at".to_string(),
        FailedSort::Address => format!("coalesce(address, ''){}", B::BINARY),
    };
    let after = q.after.map(|id| (q.after_value.clone(), id));
    sorted_page(
        &mut sql,
        &mut vals,
        Some(&value),
        &["id"],
        after,
        q.direction,
    );
    page(&mut sql, &mut vals, q.limit, 0);
    (sql, vals)
}

pub const ABORT_RUNNING: &str = "UPDATE cycles SET status = 'aborted', finished_at = ?, progress = NULL, error = 'the server running this cycle stopped before it finished' \
     WHERE profile = ? AND status = 'running'";

pub const RELEASE_SERVER_LEASES: &str =
    "DELETE FROM leases WHERE substr(holder, 1, length(?) + 1) = ? || ':'";

pub const ABORT_SERVER_CYCLES: &str = "UPDATE cycles SET status = 'aborted', finished_at = ?, progress = NULL, error = 'the server was stopped while this cycle ran' \
     WHERE server = ? AND status = 'running'";

pub const INSERT_CYCLE: &str = "INSERT INTO cycles (profile, trigger, slot, server, status, phase, started_at) VALUES (?, ?, ?, ?, 'running', 'import', ?) RETURNING id";

pub const TAKE_LEASE: &str = "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) \
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
     WHERE leases.holder = excluded.holder OR leases.expires_at < ?";

pub const CLAIM_SLOT: &str = "INSERT INTO schedule_slots (profile, slot, holder, claimed_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING";

pub const UPSERT_OBJECT: &str = "INSERT INTO objects (directory, kind, id, dn, name, upn, mail, sid, uid_number, gid_number, members, attrs, hash, \
     id_key, name_key, upn_key, mail_key, sid_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (directory, kind, id) DO UPDATE SET dn = excluded.dn, name = excluded.name, upn = excluded.upn, mail = excluded.mail, \
     sid = excluded.sid, uid_number = excluded.uid_number, gid_number = excluded.gid_number, members = excluded.members, \
     attrs = excluded.attrs, hash = excluded.hash, id_key = excluded.id_key, name_key = excluded.name_key, upn_key = excluded.upn_key, \
     mail_key = excluded.mail_key, sid_key = excluded.sid_key";

/// Whether a directory holds any object of a kind (the unique key's prefix answers it). Ordered
/// as that key is, so that the planner reads it: left to itself PostgreSQL took a sequential scan
/// to find the first of 300,000 matches sooner, and read 1.6 million rows of other directories
/// before the target's devices (613 ms with a cold cache, most of the agents list's first render;
/// 0.7 ms through the key).
pub const HAS_OBJECTS: &str =
    "SELECT 1 FROM objects WHERE directory = ? AND kind = ? ORDER BY directory, kind, id LIMIT 1";

/// Computers of a directory by name key (`kind` written out, so that SQLite's partial index
/// `objects_device_name` serves it; with no `ORDER BY`, which would make SQLite walk the unique
/// index in id order instead); hash collisions are filtered and the rows sorted by the caller.
pub fn devices_named(names: usize) -> String {
    format!(
        "SELECT {OBJ_COLS} FROM objects WHERE directory = ? AND kind = 'device' AND name_key IN ({})",
        vec!["?"; names].join(", ")
    )
}

/// Objects of a directory and kind by id (the unique key `(directory, kind, id)` serves it).
pub fn objects_by_id(ids: usize) -> String {
    format!(
        "SELECT {OBJ_COLS} FROM objects WHERE directory = ? AND kind = ? AND id IN ({}) ORDER BY id",
        vec!["?"; ids].join(", ")
    )
}

/// Candidates of the single object report: any look-up key equal to the query's.
pub const FIND_OBJECTS: &str = "SELECT directory, kind, id, dn, name, upn, mail, sid, uid_number, gid_number, members, attrs FROM objects \
     WHERE id_key = ? OR name_key = ? OR upn_key = ? OR mail_key = ? OR sid_key = ? ORDER BY directory, kind, id LIMIT ?";

/// Whether a found object really has `query` as its id, SID, or (ignoring case) name, UPN or mail.
pub fn object_matches(o: &ferry_core::model::DirObject, query: &str) -> bool {
    o.named_by(query)
}

pub const UPSERT_DIRSTATE: &str = "INSERT INTO directory_state (directory, watermark, last_full_import, last_import, objects) VALUES (?, ?, ?, ?, ?) \
     ON CONFLICT (directory) DO UPDATE SET watermark = excluded.watermark, last_full_import = excluded.last_full_import, \
     last_import = excluded.last_import, objects = excluded.objects";

pub const UPSERT_DECISION: &str = "INSERT INTO decisions (profile, kind, source_id, status, rule, source_name, source_upn, source_mail, source_sid, \
     source_uid, source_gid, target_id, target_name, target_upn, target_mail, target_sid, target_uid, target_gid, candidates, hash, \
     first_cycle, changed_cycle) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (profile, kind, source_id) DO UPDATE SET status = excluded.status, rule = excluded.rule, \
     source_name = excluded.source_name, source_upn = excluded.source_upn, source_mail = excluded.source_mail, \
     source_sid = excluded.source_sid, source_uid = excluded.source_uid, source_gid = excluded.source_gid, \
     target_id = excluded.target_id, target_name = excluded.target_name, target_upn = excluded.target_upn, \
     target_mail = excluded.target_mail, target_sid = excluded.target_sid, target_uid = excluded.target_uid, \
     target_gid = excluded.target_gid, candidates = excluded.candidates, hash = excluded.hash, changed_cycle = excluded.changed_cycle";

pub const UPSERT_PLAN: &str = "INSERT INTO plans (profile, cycle_id, hash, fingerprint, mode, rules, counts, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (profile) DO UPDATE SET cycle_id = excluded.cycle_id, hash = excluded.hash, fingerprint = excluded.fingerprint, \
     mode = excluded.mode, rules = excluded.rules, counts = excluded.counts, created_at = excluded.created_at";

pub const INSERT_LOG: &str = "INSERT INTO logs (at, cycle_id, profile, directory, level, code, object_kind, object_id, object_name, message) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

pub const INSERT_ENROLMENT: &str = "INSERT INTO enrolment_tokens (directory, kind, file_name, package_upn, content, sha256, created_at, expires_at, uploaded_at, size) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id";
pub const LIST_ENROLMENT: &str = "SELECT id, directory, kind, file_name, package_upn, sha256, CAST(coalesce(size, length(content)) AS BIGINT), created_at, expires_at, uploaded_at, revoked_at \
     FROM enrolment_tokens WHERE (CAST(? AS TEXT) IS NULL OR directory = ?) ORDER BY id DESC";
pub const GET_ENROLMENT: &str = "SELECT id, directory, kind, file_name, package_upn, sha256, CAST(coalesce(size, length(content)) AS BIGINT), created_at, expires_at, uploaded_at, revoked_at, content \
     FROM enrolment_tokens WHERE id = ?";
pub const SET_ENROLMENT_CONTENT: &str =
    "UPDATE enrolment_tokens SET size = coalesce(size, length(content)), content = ? WHERE id = ?";
pub const CLAIM_META: &str =
    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING";
pub const GET_META: &str = "SELECT value FROM meta WHERE key = ?";
pub const REVOKE_ENROLMENT: &str =
    "UPDATE enrolment_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL";

pub const PSK_COLS: &str = "id, name, created_at, retired_at, uses_left, device";
pub const INSERT_PSK: &str =
    "INSERT INTO psks (name, hash, uses_left, device, created_at) VALUES (?, ?, ?, ?, ?)";
/// One statement: a limited key's last use cannot be taken twice.
pub const USE_PSK: &str = "UPDATE psks SET uses_left = uses_left - 1 \
     WHERE id = ? AND retired_at IS NULL AND (uses_left IS NULL OR uses_left > 0)";
pub const AGENT_COLS: &str = "id, device_id, hostname, os, facts, psk_id, enrolled_at, last_contact, last_address, agent_version, state, assigned_run, preflight, verification";
/// The agents a device's enrollment may claim, each with its node key's hash after the
/// [`AGENT_COLS`] (at index [`AGENT_COL_COUNT`]).
pub fn agents_claimed() -> String {
    format!(
        "SELECT {AGENT_COLS}, node_hash FROM agents WHERE device_id = ? OR host_key = ? ORDER BY id"
    )
}

pub const AGENT_COL_COUNT: usize = 14;
pub const ASSIGN_RUN: &str = "UPDATE agents SET assigned_run = ?, assigned_steps = ? WHERE id = ? \
     AND (assigned_run IS NULL OR assigned_run <> ? OR assigned_steps IS NULL OR assigned_steps <> ?)";
pub const ASSIGNED_RUN: &str = "SELECT assigned_run, assigned_steps FROM agents WHERE id = ?";
/// Makes room for a log chunk under the run's cap in one statement (after `LOG_BYTES_ROW`).
pub const LOG_BYTES_ROW: &str =
    "INSERT INTO agent_log_bytes (agent_id, run, bytes) VALUES (?, ?, 0) ON CONFLICT DO NOTHING";
pub const ADD_LOG_BYTES: &str = "UPDATE agent_log_bytes SET bytes = bytes + ? \
     WHERE agent_id = ? AND run = ? AND bytes + ? <= ? RETURNING bytes";
pub const REQUEST_COLS: &str = "id, device_id, hostname, facts, psk_id, address, reason, conflict_agent_id, state, created_at, decided_by, decided_at";
pub const INSERT_REQUEST: &str = "INSERT INTO enrollment_requests (device_id, hostname, facts, profiles, node_hash, psk_id, address, reason, conflict_agent_id, state, created_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?) RETURNING id";
pub const DECIDE_REQUEST: &str = "UPDATE enrollment_requests SET state = ?, decided_by = ?, decided_at = ? WHERE id = ? AND state = 'pending' \
     RETURNING node_hash, profiles";
/// Every live agent's host-name key and state (`Store::live_agent_states`), through migration
/// 0030's index (SQLite: `agents_claim_state`, which covers it; PostgreSQL: the claims' unique
/// index, which includes the state: an index-only scan for the pages its visibility map marks
/// all-visible, a look-up in the table for the others).
pub const LIVE_AGENT_STATES: &str =
    "SELECT hostname_claim, state FROM agents WHERE hostname_claim IS NOT NULL";

/// Agents of other devices with the approved request's host name (its [`host_key`]) stop working.
pub const REPLACE_AGENTS: &str = "UPDATE agents SET node_hash = 'replaced:' || CAST(id AS TEXT), state = 'replaced', hostname_claim = NULL \
     WHERE host_key = ? AND device_id <> ?";
/// Enrolls a device, or a device again: the agent with its device id takes the new node key
/// only when it was replaced, when its node key is still the one the enrollment was decided
/// against (13th parameter), or when an operator approved it (14th, 1). Otherwise no row comes
/// back: another enrollment of the device was taken in between. The agent claims its host name
/// (`hostname_claim`, unique; 11th), and is found by it (`host_key`, 12th), both the name's
/// [`host_key`], computed here, not by the database's `lower()`: a live agent of another device
/// holding the claim fails the statement with a unique violation, which the backends report as
/// [`crate::StoreError::ClaimChanged`].
pub const UPSERT_AGENT: &str = "INSERT INTO agents (device_id, hostname, os, facts, node_hash, psk_id, enrolled_at, last_contact, last_address, agent_version, state, hostname_claim, host_key) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'enrolled', ?, ?) \
     ON CONFLICT (device_id) DO UPDATE SET hostname = excluded.hostname, hostname_claim = excluded.hostname_claim, host_key = excluded.host_key, os = excluded.os, facts = excluded.facts, node_hash = excluded.node_hash, \
     psk_id = excluded.psk_id, enrolled_at = excluded.enrolled_at, last_contact = excluded.last_contact, last_address = excluded.last_address, \
     agent_version = excluded.agent_version, state = 'enrolled' \
     WHERE agents.state = 'replaced' OR agents.node_hash = ? OR CAST(? AS BIGINT) = 1 RETURNING id";
pub const INSERT_PROFILE: &str =
    "INSERT INTO agent_profiles (agent_id, name, body) VALUES (?, ?, ?)";
pub const INSERT_EVENT: &str = "INSERT INTO agent_events (agent_id, run, received_at, at, step, status, message, progress) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
pub const EVENTS: &str = "SELECT agent_id, run, received_at, at, step, status, message, progress FROM agent_events \
     WHERE agent_id = ? AND (CAST(? AS TEXT) IS NULL OR run = ?) ORDER BY id";
pub const INSERT_LOG_CHUNK: &str = "INSERT INTO agent_logs (agent_id, run, start, received_at, text) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING";
/// A refusal like one seen in the last hour (same address, code, agent and device) adds to
/// its count instead of adding a row.
pub const COUNT_FAILED: &str = "UPDATE failed_comms SET count = count + 1, at = ?, reason = ? \
     WHERE id = (SELECT id FROM failed_comms WHERE at >= ? AND code = ? \
     AND address IS NOT DISTINCT FROM ? AND agent_id IS NOT DISTINCT FROM ? AND device_id IS NOT DISTINCT FROM ? \
     ORDER BY id DESC LIMIT 1)";
pub const INSERT_FAILED: &str = "INSERT INTO failed_comms (at, first_at, count, address, code, reason, agent_id, device_id) VALUES (?, ?, 1, ?, ?, ?, ?, ?)";
pub const PRUNE_FAILED: &str = "DELETE FROM failed_comms WHERE at < ?";
pub const PRUNE_EVENTS: &str = "DELETE FROM agent_events WHERE received_at < ?";
pub const PRUNE_LOGS: &str = "DELETE FROM agent_logs WHERE received_at < ?";

/// Operators: every token but sessions, with whether the operator has a password and a session.
pub const OPERATORS: &str = "SELECT t.name, t.role, t.created_at, (p.name IS NOT NULL), \
     EXISTS (SELECT 1 FROM tokens s WHERE s.name = 'session:' || t.name) \
     FROM tokens t LEFT JOIN operator_passwords p ON p.name = t.name \
     WHERE t.name NOT LIKE 'session:%' ORDER BY t.name";
/// One more failed sign-in under a key, atomically (servers sharing the database count together).
pub const ADD_SIGN_IN_FAILURE: &str = "INSERT INTO sign_in_failures (key, failures, last_at) VALUES (?, 1, ?) \
     ON CONFLICT (key) DO UPDATE SET failures = sign_in_failures.failures + 1, last_at = excluded.last_at \
     RETURNING failures, last_at";

#[cfg(test)]
mod tests {
    /// Catches: a column added to `AGENT_COLS` shifting the node key's hash read after them.
    #[test]
    fn agent_col_count_is_the_columns() {
        assert_eq!(super::AGENT_COLS.split(',').count(), super::AGENT_COL_COUNT);
    }
}
