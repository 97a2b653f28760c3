//! Sync cycles: objects, decisions (the translation table), plans, approvals, history and logs.

use super::*;
use ferry_core::model::lookup_key;

#[async_trait]
impl<B: Backend> SyncStore for SqlStore<B> {
    async fn begin_cycle(
        &self,
        profile: &str,
        trigger: &str,
        slot: Option<i64>,
        server: &str,
        now: i64,
    ) -> Result<i64> {
        let mut tx = self.b.begin().await?;
        tx.execute(query::ABORT_RUNNING, params![now, profile])
            .await?;
        let id = tx
            .query_one(
                query::INSERT_CYCLE,
                params![profile, trigger, slot, server, now],
                |r| r.get(0),
            )
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn set_cycle_phase(&self, id: i64, phase: &str) -> Result<()> {
        self.exec(
            "UPDATE cycles SET phase = ? WHERE id = ?",
            params![phase, id],
        )
        .await?;
        Ok(())
    }

    async fn set_cycle_progress(&self, id: i64, progress: &str) -> Result<()> {
        self.exec(
            "UPDATE cycles SET progress = ? WHERE id = ? AND status = 'running'",
            params![progress, id],
        )
        .await?;
        Ok(())
    }

    async fn fail_cycle(
        &self,
        id: i64,
        profile: &str,
        error: &str,
        logs: &[LogEntry],
        now: i64,
    ) -> Result<()> {
        let mut tx = self.b.begin().await?;
        tx.execute(
            "UPDATE cycles SET status = 'failed', finished_at = ?, error = ?, progress = NULL WHERE id = ?",
            params![now, error, id],
        )
        .await?;
        insert_logs(tx.as_mut(), Some(id), Some(profile), logs, now).await?;
        tx.commit().await
    }

    async fn commit_sync(&self, c: SyncCommit<'_>) -> Result<()> {
        self.b.commit_sync(&c).await
    }

    async fn finish_cycle(
        &self,
        id: i64,
        profile: &str,
        export: &str,
        logs: &[LogEntry],
        now: i64,
    ) -> Result<()> {
        let mut tx = self.b.begin().await?;
        tx.execute(
            "UPDATE cycles SET status = 'succeeded', phase = 'done', finished_at = ?, export = ?, progress = NULL WHERE id = ?",
            params![now, export, id],
        )
        .await?;
        insert_logs(tx.as_mut(), Some(id), Some(profile), logs, now).await?;
        tx.commit().await
    }

    async fn cycle(&self, id: i64) -> Result<Option<CycleInfo>> {
        self.row(
            &format!("SELECT {} FROM cycles WHERE id = ?", query::CYCLE_COLS),
            params![id],
            cycle_row,
        )
        .await
    }

    async fn cycles(&self, profile: Option<&str>, limit: i64) -> Result<Vec<CycleInfo>> {
        self.rows(
            &format!(
                "SELECT {} FROM cycles WHERE (CAST(? AS TEXT) IS NULL OR profile = ?) ORDER BY id DESC LIMIT ?",
                query::CYCLE_COLS
            ),
            params![profile, profile, limit],
            cycle_row,
        )
        .await
    }

    async fn object_digest(&self, directory: &str) -> Result<FxHashMap<(ObjectKind, String), u64>> {
        let mut out = FxHashMap::default();
        let mut c = self.b.read().await?;
        c.each(
            "SELECT kind, id, hash FROM objects WHERE directory = ?",
            params![directory],
            &mut |r| {
                out.insert(
                    (codec::kind(r.str(0)?)?, r.get(1)?),
                    r.get::<i64>(2)? as u64,
                );
                Ok(())
            },
        )
        .await?;
        Ok(out)
    }

    async fn load_objects(&self, directory: &str) -> Result<Vec<DirObject>> {
        self.rows(
            &format!(
                "SELECT {} FROM objects WHERE directory = ? ORDER BY kind, id",
                query::OBJ_COLS
            ),
            params![directory],
            |r| object_row(r).map(|s| s.object),
        )
        .await
    }

    async fn objects_by_id(
        &self,
        directory: &str,
        kind: ObjectKind,
        ids: &[&str],
    ) -> Result<Vec<DirObject>> {
        let ids = &ids[..ids.len().min(500)];
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut vals = vec![Val::text(directory), Val::text(kind.as_str())];
        vals.extend(ids.iter().map(|id| Val::text(*id)));
        self.rows(&query::objects_by_id(ids.len()), &vals, |r| {
            object_row(r).map(|s| s.object)
        })
        .await
    }

    async fn directory_state(&self, directory: &str) -> Result<Option<DirectoryState>> {
        self.row(
            "SELECT directory, watermark, last_full_import, last_import, objects FROM directory_state WHERE directory = ?",
            params![directory],
            |r| {
                Ok(DirectoryState {
                    directory: r.get(0)?,
                    watermark: r.get(1)?,
                    last_full_import: r.get(2)?,
                    last_import: r.get(3)?,
                    objects: r.get(4)?,
                })
            },
        )
        .await
    }

    async fn find_objects(&self, q: &str, limit: i64) -> Result<Vec<StoredObject>> {
        let key = lookup_key(q);
        let found = self
            .rows(
                query::FIND_OBJECTS,
                params![&key, &key, &key, &key, &key, limit],
                object_row,
            )
            .await?;
        Ok(found
            .into_iter()
            .filter(|f| query::object_matches(&f.object, q))
            .collect())
    }

    async fn has_objects(&self, directory: &str, kind: ObjectKind) -> Result<bool> {
        Ok(self
            .row(
                query::HAS_OBJECTS,
                params![directory, kind.as_str()],
                |_| Ok(()),
            )
            .await?
            .is_some())
    }

    async fn devices_named(&self, directory: &str, names: &[&str]) -> Result<Vec<DirObject>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<i64> = names.iter().map(|n| lookup_key(n)).collect();
        let mut vals = vec![Val::text(directory)];
        vals.extend(keys.iter().map(|k| Val::Int(*k)));
        let found = self
            .rows(&query::devices_named(names.len()), &vals, object_row)
            .await?;
        let lower: Vec<String> = names
            .iter()
            .map(|n| ferry_core::transform::lowercase(std::borrow::Cow::Borrowed(n)).into_owned())
            .collect();
        let mut found: Vec<DirObject> = found
            .into_iter()
            .map(|f| f.object)
            .filter(|o| {
                let name = ferry_core::transform::lowercase(std::borrow::Cow::Borrowed(&o.name));
                lower.iter().any(|n| *n == name)
            })
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    async fn decision_digest(
        &self,
        profile: &str,
    ) -> Result<FxHashMap<DecisionKey, (u64, Status)>> {
        let mut out = FxHashMap::default();
        let mut c = self.b.read().await?;
        c.each(
            "SELECT kind, source_id, hash, status FROM decisions WHERE profile = ?",
            params![profile],
            &mut |r| {
                out.insert(
                    (codec::kind(r.str(0)?)?, r.get(1)?),
                    (r.get::<i64>(2)? as u64, codec::status(r.str(3)?)?),
                );
                Ok(())
            },
        )
        .await?;
        Ok(out)
    }

    async fn decisions(&self, q: &DecisionQuery) -> Result<Vec<DecisionRow>> {
        self.decision_query(q, Select::Rows, decision_row).await
    }

    async fn count_decisions(&self, q: &DecisionQuery) -> Result<i64> {
        Ok(self
            .decision_query(q, Select::Count(None), |r| r.get(0))
            .await?
            .into_iter()
            .next()
            .unwrap_or(0))
    }

    async fn count_decisions_upto(&self, q: &DecisionQuery, cap: i64) -> Result<i64> {
        Ok(self
            .decision_query(q, Select::Count(Some(cap.max(0))), |r| r.get(0))
            .await?
            .into_iter()
            .next()
            .unwrap_or(0))
    }

    async fn index_search(&self) -> Result<bool> {
        self.b.index_search().await
    }

    async fn report_objects(&self, q: &str, limit: i64) -> Result<(Vec<StoredObject>, bool)> {
        if let Some(found) = self.objects_through_decisions(q, limit).await?
            && !found.is_empty()
        {
            return Ok((found, false));
        }
        Ok((self.find_objects(q, limit).await?, true))
    }

    async fn decisions_for_object(&self, kind: ObjectKind, id: &str) -> Result<Vec<DecisionRow>> {
        self.rows(
            &format!(
                // By the primary key within each profile that has a plan (a profile's decisions
                // and plan are committed together), and by `decisions_target_id`: the source id
                // alone leads no index, and `source_id = ? OR target_id = ?` scanned a million
                // rows (0.3–1 s per object report).
                "SELECT {cols} FROM decisions WHERE profile IN (SELECT profile FROM plans) AND kind = ? AND source_id = ? \
                 UNION SELECT {cols} FROM decisions WHERE target_id = ? AND kind = ? ORDER BY 1",
                cols = query::DEC_COLS
            ),
            params![kind.as_str(), id, id, kind.as_str()],
            decision_row,
        )
        .await
    }

    async fn plan(&self, profile: &str) -> Result<Option<PlanInfo>> {
        self.row(
            "SELECT profile, cycle_id, hash, fingerprint, mode, rules, counts, created_at FROM plans WHERE profile = ?",
            params![profile],
            |r| {
                Ok(PlanInfo {
                    profile: r.get(0)?,
                    cycle_id: r.get(1)?,
                    hash: r.get(2)?,
                    fingerprint: r.get(3)?,
                    mode: r.get(4)?,
                    rules: codec::json(r.str(5)?)?,
                    counts: codec::json(r.str(6)?)?,
                    created_at: r.get(7)?,
                })
            },
        )
        .await
    }

    async fn plan_profiles(&self) -> Result<Vec<String>> {
        self.rows("SELECT profile FROM plans ORDER BY profile", &[], |r| {
            r.get(0)
        })
        .await
    }

    async fn plan_writes(&self, profile: &str, offset: i64, limit: i64) -> Result<Vec<Write>> {
        self.rows(
            "SELECT body FROM plan_writes WHERE profile = ? ORDER BY seq LIMIT ? OFFSET ?",
            params![
                profile,
                if limit > 0 { limit } else { i64::MAX },
                offset.max(0)
            ],
            |r| codec::json(r.str(0)?),
        )
        .await
    }

    async fn plan_writes_after(
        &self,
        profile: &str,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<(i64, Write)>> {
        // Writes are numbered from 0.
        self.rows(
            "SELECT seq, body FROM plan_writes WHERE profile = ? AND seq > ? ORDER BY seq LIMIT ?",
            params![profile, after.unwrap_or(-1), limit.max(1)],
            |r| Ok((r.get(0)?, codec::json(r.str(1)?)?)),
        )
        .await
    }

    async fn approve(&self, profile: &str, plan_hash: &str, by: &str, now: i64) -> Result<()> {
        self.exec(
            "INSERT INTO approvals (profile, plan_hash, approved_by, approved_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (profile) DO UPDATE SET plan_hash = excluded.plan_hash, approved_by = excluded.approved_by, approved_at = excluded.approved_at",
            params![profile, plan_hash, by, now],
        )
        .await?;
        Ok(())
    }

    async fn approval(&self, profile: &str) -> Result<Option<Approval>> {
        self.row(
            "SELECT profile, plan_hash, approved_by, approved_at FROM approvals WHERE profile = ?",
            params![profile],
            |r| {
                Ok(Approval {
                    profile: r.get(0)?,
                    plan_hash: r.get(1)?,
                    approved_by: r.get(2)?,
                    approved_at: r.get(3)?,
                })
            },
        )
        .await
    }

    async fn history(&self, kind: ObjectKind, source_id: &str) -> Result<Vec<HistoryRow>> {
        self.rows(
            "SELECT profile, cycle_id, at, change FROM history WHERE kind = ? AND source_id = ? ORDER BY id",
            params![kind.as_str(), source_id],
            |r| {
                Ok(HistoryRow {
                    profile: r.get(0)?,
                    cycle_id: r.get(1)?,
                    at: r.get(2)?,
                    change: r.get(3)?,
                })
            },
        )
        .await
    }

    async fn append_logs(
        &self,
        cycle_id: Option<i64>,
        profile: Option<&str>,
        logs: &[LogEntry],
        now: i64,
    ) -> Result<()> {
        let mut tx = self.b.begin().await?;
        insert_logs(tx.as_mut(), cycle_id, profile, logs, now).await?;
        tx.commit().await
    }

    async fn logs(&self, q: &LogQuery) -> Result<Vec<StoredLog>> {
        let (sql, vals) = query::logs(q);
        self.rows(&sql, &vals, log_row).await
    }

    async fn count_logs(&self, q: &LogQuery) -> Result<i64> {
        let (sql, vals) = query::count_logs(q);
        Ok(self.row(&sql, &vals, |r| r.get(0)).await?.unwrap_or(0))
    }
}

/// What a decision query reads: its rows, or how many there are (up to a cap when given).
#[derive(Clone, Copy)]
enum Select {
    Rows,
    Count(Option<i64>),
}

impl<B: Backend> SqlStore<B> {
    /// Rows of a decision query (`count`: its count). On a backend with a deferred search index
    /// (SQLite, migration 0024) a term long enough for it is looked for through the index when
    /// the index is whole for the profiles searched, checked in the same snapshot as the query
    /// (a cycle committing in between cannot make the index miss its rows), and by a scan
    /// otherwise. So too a page sorted on a column of `decisions_order` (migration 0027), which
    /// the same indexer fills: read from it when whole, sorted from the decisions otherwise.
    async fn decision_query<T: Send>(
        &self,
        q: &DecisionQuery,
        select: Select,
        decode: impl Fn(&dyn Row) -> Result<T> + Send + Sync,
    ) -> Result<Vec<T>> {
        let count = !matches!(select, Select::Rows);
        let cap = |(sql, vals): (String, Vec<Val<'static>>)| match select {
            Select::Count(Some(cap)) => query::count_upto(sql, vals, cap),
            _ => (sql, vals),
        };
        let term = q.search.as_deref().unwrap_or_default();
        let long = term.chars().count() >= query::INDEXED_TERM_CHARS;
        let short = crate::search_index::short(term);
        let searched = long || short.is_some();
        let ordered = !count && q.sort.ordered();
        if B::TERMS_IN_CYCLE && short.is_some() {
            // The vocabulary and the decisions in one snapshot: both are written by one commit.
            let mut c = self.b.snapshot().await?;
            let by = match terms_containing::<B>(c.as_mut(), term, select).await? {
                Some(terms) => query::SearchBy::AnyOf(terms),
                None => query::SearchBy::Backend,
            };
            let order = query::own_order::<B>();
            let (sql, vals) = cap(query::decisions_by::<B>(q, count, by, order));
            let rows = c.query(&sql, &vals, decode).await?;
            c.commit().await?;
            return Ok(rows);
        }
        if !(B::DEFERRED_SEARCH && (searched || ordered)) {
            let (sql, vals) = cap(query::decisions::<B>(q, count));
            return self.rows(&sql, &vals, decode).await;
        }
        let mut c = self.b.snapshot().await?;
        let whole = search_index_whole(c.as_mut(), q.profile.as_deref()).await?;
        let asked = match whole && searched {
            false => None,
            true => index_query::<B>(c.as_mut(), term, select).await?,
        };
        let by = asked.map_or(query::SearchBy::Scan, query::SearchBy::Deferred);
        // The indexer fills `decisions_order` with the search index, under the same marks, and
        // builds its indexes after a large pass.
        let order = if whole && ordered && order_ready(c.as_mut()).await? {
            query::Ordered::Table
        } else {
            query::Ordered::Scan
        };
        let (sql, vals) = cap(query::decisions_by::<B>(q, count, by, order));
        let rows = c.query(&sql, &vals, decode).await?;
        c.commit().await?;
        Ok(rows)
    }

    /// The single object report's look-up through the deferred search index (SQLite): the
    /// objects of the decisions one of whose values (name, UPN, mail, SID: the index's; ids: by
    /// the decisions' own indexes) equals `q`, read by primary key. `None` where there is no such
    /// index, the term is too short for it or the index is not whole; the caller then scans. So
    /// too for a line feed or a NUL in `q`, which no folded value holds (`ferry_fold` folds a NUL
    /// to a line feed).
    async fn objects_through_decisions(
        &self,
        q: &str,
        limit: i64,
    ) -> Result<Option<Vec<StoredObject>>> {
        if !B::DEFERRED_SEARCH || q.is_empty() || q.contains(['\n', '\0']) {
            return Ok(None);
        }
        let mut c = self.b.snapshot().await?;
        if !search_index_whole(c.as_mut(), None).await? {
            return Ok(None);
        }
        let Some(m) = index_query::<B>(c.as_mut(), q, Select::Rows).await? else {
            return Ok(None);
        };
        if m.is_empty() {
            // No trigram of the index holds it: no decision's value is it; the scan looks at
            // every object.
            return Ok(None);
        }
        let folded = q.to_lowercase();
        let sides = |side: &str| {
            ["name", "upn", "mail", "sid"]
                .iter()
                .map(|col| format!("{}({side}_{col}) = ?2", B::FOLD))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        // Which side holds the value: the source's id, the target's, or both.
        let sql = format!(
            "SELECT kind, CASE WHEN {src} OR source_id = ?3 THEN source_id END, \
             CASE WHEN {tgt} OR target_id = ?3 THEN target_id END FROM decisions \
             WHERE {cand} AND ({src} OR {tgt}) \
             UNION SELECT kind, source_id, NULL FROM decisions WHERE profile IN (SELECT profile FROM plans) \
             AND kind IN ('user', 'group', 'device') AND source_id = ?3 \
             UNION SELECT kind, NULL, target_id FROM decisions WHERE target_id = ?3 LIMIT ?4",
            src = sides("source"),
            tgt = sides("target"),
            cand = crate::search_index::CANDIDATES.replace('?', "?1"),
        );
        let pairs: Vec<(String, Option<String>, Option<String>)> = c
            .query(&sql, params![m, &folded, q, limit.max(1) * 4], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .await?;
        let mut keys: Vec<(String, String)> = Vec::new();
        for (kind, s, t) in pairs {
            for id in [s, t].into_iter().flatten() {
                if !keys.contains(&(kind.clone(), id.clone())) {
                    keys.push((kind.clone(), id));
                }
            }
        }
        let mut out = Vec::new();
        for (kind, id) in keys {
            // Every directory objects were stored for, by the unique key (directory, kind, id).
            let found = c
                .query(
                    &format!(
                        "SELECT {} FROM objects WHERE directory IN (SELECT directory FROM directory_state) \
                         AND kind = ? AND id = ? ORDER BY directory",
                        query::OBJ_COLS
                    ),
                    params![&kind, &id],
                    object_row,
                )
                .await?;
            out.extend(
                found
                    .into_iter()
                    .filter(|f| query::object_matches(&f.object, q)),
            );
        }
        c.commit().await?;
        out.sort_by(|a, b| {
            (&a.directory, a.object.kind.as_str(), &a.object.id).cmp(&(
                &b.directory,
                b.object.kind.as_str(),
                &b.object.id,
            ))
        });
        out.dedup_by(|a, b| {
            a.directory == b.directory
                && a.object.kind == b.object.kind
                && a.object.id == b.object.id
        });
        out.truncate(limit.max(0) as usize);
        Ok(Some(out))
    }
}

/// The FTS5 query SQLite's search index is asked for a term (read on `c`, inside the caller's
/// snapshot): of one or two characters the trigrams that contain it ([`trigrams_containing`]),
/// longer its rarest ([`rarest_trigrams`]). `None`: the index cannot help, scan; `Some("")`: no
/// value holds the term. `count`: for a count, which reads every candidate (or up to its cap)
/// however many there are, where a page of a common term fills sooner by the scan.
async fn index_query<B: Backend>(
    c: &mut (dyn Conn + '_),
    term: &str,
    select: Select,
) -> Result<Option<String>> {
    match crate::search_index::short(term) {
        Some(short) => trigrams_containing::<B>(c, &short, select).await,
        None => rarest_trigrams(c, term).await,
    }
}

/// The FTS5 query of a term's rarest trigrams in SQLite's search index, counted on `c` (inside
/// the caller's snapshot); `None` when the term has no trigram.
async fn rarest_trigrams(c: &mut (dyn Conn + '_), term: &str) -> Result<Option<String>> {
    let mut counted = Vec::new();
    for t in crate::search_index::trigrams(term) {
        let n: i64 = c
            .query_one(
                crate::search_index::PROBE,
                params![&t, crate::search_index::PROBE_CAP],
                |r| r.get(0),
            )
            .await?;
        counted.push((t, n));
        if n == 0 {
            // No entry holds it: nothing can match; this trigram alone says so.
            break;
        }
    }
    Ok(crate::search_index::rarest(counted))
}

/// The FTS5 query of the trigrams in SQLite's search index that contain a short folded term
/// (`search_index::short`), read on `c` (inside the caller's snapshot); `None` when the term is
/// too common for the index to help (`search_index::any_of`).
async fn trigrams_containing<B: Backend>(
    c: &mut (dyn Conn + '_),
    short: &str,
    select: Select,
) -> Result<Option<String>> {
    use crate::search_index::{
        COUNT_CAP, PROBE, SHORT_CAP, SHORT_TERMS, any_of, any_of_upto, quote,
    };
    let terms: Vec<String> = c
        .query(
            &query::terms_containing::<B>(),
            params![short, short, SHORT_TERMS as i64 + 1],
            |r| r.get(0),
        )
        .await?;
    if terms.len() > SHORT_TERMS || terms.iter().any(|t| t.contains('\0')) {
        // Too common; or a trigram with a NUL (from a value holding one), which an FTS5 query
        // cannot carry: the scan answers.
        return Ok(None);
    }
    let cap = match select {
        Select::Count(None) => {
            // An exact count reads every candidate anyway: the scan would read more rows for
            // each match, however common the term. Nothing to count first.
            let all: Vec<(String, i64)> = terms.iter().map(|t| (quote(t), 0)).collect();
            return Ok(any_of(&all));
        }
        // A count up to a cap (`total_upto`, with the console's page) stops at it: through the
        // index while the candidates are not many more than it (`ë`, in 25,000 of a million
        // entries: a count up to 1,000 scanned 40,000 rows), by the scan for a term as dense as
        // `an` (the index's candidates, hundreds of thousands, are all read before the first).
        Select::Count(Some(_)) => COUNT_CAP,
        Select::Rows => SHORT_CAP,
    };
    let (mut counted, mut held) = (Vec::new(), 0);
    for t in terms {
        // Counted up to what is left under the cap: exact while the sum stays under it.
        let q = quote(&t);
        let n: i64 = c
            .query_one(PROBE, params![&q, cap - held], |r| r.get(0))
            .await?;
        held += n;
        counted.push((q, n));
        if held >= cap {
            break;
        }
    }
    Ok(any_of_upto(&counted, cap))
}

/// Whether every index of SQLite's `decisions_order` exists (`search_index::ORDER_READY`), read on
/// `c` (inside the caller's snapshot).
async fn order_ready(c: &mut (dyn Conn + '_)) -> Result<bool> {
    let n: i64 = c
        .query_one(crate::search_index::ORDER_READY, params![], |r| r.get(0))
        .await?;
    Ok(n == crate::search_index::ORDER_INDEXES.len() as i64)
}

/// The trigrams of PostgreSQL's vocabulary (migration 0028) that contain a term of one or two
/// characters, folded by the database (read on `c`, inside the caller's snapshot); `None` when
/// the term is too common for the index to help `select` (the caps of SQLite's `index_query`:
/// the scan fills a page, or counts up to a cap, sooner); empty when no value holds it.
async fn terms_containing<B: Backend>(
    c: &mut (dyn Conn + '_),
    term: &str,
    select: Select,
) -> Result<Option<Vec<String>>> {
    use crate::search_index::{COUNT_CAP, SHORT_CAP, SHORT_TERMS};
    let found: Vec<(String, i64)> = c
        .query(
            &query::terms_containing::<B>(),
            params![term, term, SHORT_TERMS as i64 + 1],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .await?;
    // As on SQLite (`index_query`): an exact count reads every candidate anyway, so only the
    // number of trigrams caps it; a count up to a cap reads the index while the candidates are
    // not many more than it (`an`'s, hundreds of thousands, took 70 ms to count 1,000 through
    // the index, 4 ms by the scan); a page while they are few.
    let held: i64 = found.iter().map(|(_, n)| n).sum();
    let cap = match select {
        Select::Count(None) => i64::MAX,
        Select::Count(Some(_)) => COUNT_CAP,
        Select::Rows => SHORT_CAP,
    };
    if found.len() > SHORT_TERMS || held >= cap {
        return Ok(None);
    }
    // The term as the database folds it (its `lower`, which may differ from Rust's).
    let folded: String = c
        .query_one(&format!("SELECT {}", B::FOLD_TERM), params![term], |r| {
            r.get(0)
        })
        .await?;
    let found: Vec<String> = found.into_iter().map(|(t, _)| t).collect();
    Ok(Some(crate::search_index::short_patterns(&folded, &found)))
}

/// Whether SQLite's deferred search index is whole for `profile` (every profile when `None`),
/// read on `c` (inside the caller's snapshot).
async fn search_index_whole(c: &mut (dyn Conn + '_), profile: Option<&str>) -> Result<bool> {
    let behind: i64 = c
        .query_one(
            crate::search_index::BEHIND,
            params![profile, profile],
            |r| r.get(0),
        )
        .await?;
    Ok(behind == 0)
}
