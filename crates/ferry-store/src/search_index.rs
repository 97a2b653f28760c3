//! SQLite's translation search index, filled outside the cycle (migration 0024).
//!
//! A cycle commits its decisions without touching the index (upkeep inside the cycle's transaction
//! cost a first cycle of a million decisions 33 s, docs/BENCHMARKS.md § Issue 20). Afterwards a
//! background task (`ferry_server::sync::search_index`) calls [`chunk`] until it reports the index
//! whole; each call is one short write transaction that
//!
//! 1. removes the entries of up to [`ROWS`] deleted decisions (`decisions_search_gone`, filled by a
//!    trigger), unless their rid is in use again; or else
//! 2. indexes, for the first profile whose mark is behind its plan, the decisions of up to [`SPAN`]
//!    rids past the pass's position whose `changed_cycle` lies between the mark and the pass's
//!    target cycle (at most [`ROWS`] of them), replacing each rid's entry with the row's current
//!    folded values, and stores the new position (or, at the end of the table, the new mark) in the
//!    same transaction: a killed indexer resumes where its last committed chunk ended.
//!
//! A search reads the index only when it is whole for the profiles searched ([`BEHIND`]), in the
//! same read transaction as the search itself, and confirms every candidate with the scan's own
//! condition: stale entries (rows changed or deleted since) never show, and until the index is
//! whole the scan answers.
//!
//! The same chunks write each decision's row of `decisions_order` (migration 0027, [`ORDER`]):
//! the order of the translation table's columns that no index on `decisions` serves, read under
//! the same rule (whole, or the listing sorts the decisions themselves).

use rusqlite::{Connection, OptionalExtension, params};

/// Rids a chunk walks at most (a pass over a cycle that changed few rows reads this many rows per
/// transaction and writes little).
pub const SPAN: i64 = 16_384;

/// Rows a chunk indexes or removes at most: about 35 ms of trigram work on the project's machine
/// (2,000 took about 70 ms).
pub const ROWS: i64 = 1_000;

/// How long a chunk indexes at most before it commits what it did: the longest the writer is held
/// for the index, whatever the machine (a loaded one took 340 ms for [`ROWS`] entries). An FTS5
/// segment merge started by the last insert can still run over it.
pub const BUDGET: std::time::Duration = std::time::Duration::from_millis(60);

/// The indexed text of a decision: its eight searched values folded as the scan folds them
/// (`ferry_fold`), joined by line feeds.
pub const TERMS: &str = "ferry_fold(source_name) || char(10) || coalesce(ferry_fold(source_upn), '') || char(10) \
     || coalesce(ferry_fold(source_mail), '') || char(10) || coalesce(ferry_fold(source_sid), '') || char(10) \
     || coalesce(ferry_fold(target_name), '') || char(10) || coalesce(ferry_fold(target_upn), '') || char(10) \
     || coalesce(ferry_fold(target_mail), '') || char(10) || coalesce(ferry_fold(target_sid), '')";

/// The indexes of `decisions_order` (migration 0027): a name and its column, each indexed with
/// the listing's filters before it and the key after it, (profile, status, value, kind, source
/// id). Created by the indexer ([`chunk`]), one a chunk, when the search index is otherwise whole;
/// dropped when a pass must write [`BULK`] rows or more, so that those are written to the table
/// alone and the indexes built once, sorted. Inserted one at a time in the order of the rids, a
/// million rows cost these four indexes minutes of random page writes (each chunk rewriting
/// thousands of pages), where building each takes seconds.
pub const ORDER_INDEXES: &[(&str, &str)] = &[
    ("decisions_order_target_name", "o_target_name"),
    ("decisions_order_source_sid", "o_source_sid"),
    ("decisions_order_target_sid", "o_target_sid"),
    ("decisions_order_rule", "o_rule"),
];

/// Rows after which a pass drops `decisions_order`'s indexes, to build them after it.
pub const BULK: i64 = 50_000;

/// How many of [`ORDER_INDEXES`] exist: a listing reads `decisions_order` only when all do (and
/// the index is whole for the profiles listed).
pub const ORDER_READY: &str = "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'decisions_order' \
     AND name IN ('decisions_order_target_name', 'decisions_order_source_sid', 'decisions_order_target_sid', 'decisions_order_rule')";

/// A decision's row of `decisions_order` (migration 0027) written from its current values
/// (parameters: its rid and [`ORDER_VALUES`]), in the same chunk as its entry: the order a listing sorted on the target
/// name, a SID or the rule reads once the index is whole.
pub const ORDER: &str = "INSERT OR REPLACE INTO decisions_order (o_rid, o_profile, o_status, o_kind, o_source_id, \
     o_target_name, o_source_sid, o_target_sid, o_rule) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// The values of a decision's [`ORDER`] row after its rid, as a chunk reads them with its terms.
const ORDER_VALUES: &str = "profile, status, kind, source_id, coalesce(target_name, ''), coalesce(source_sid, ''), \
     coalesce(target_sid, ''), coalesce(rule, -1)";

/// How many of the searched profiles the index is not whole for (parameters: the profile, twice,
/// or NULL for every profile). A profile with no plan has no decisions.
pub const BEHIND: &str = "SELECT count(*) FROM plans p LEFT JOIN decisions_search_state s ON s.profile = p.profile \
     WHERE coalesce(s.indexed_cycle, 0) < p.cycle_id AND (CAST(? AS TEXT) IS NULL OR p.profile = ?)";

/// The condition that narrows a search to the index's candidates, with one parameter (an FTS5
/// query, [`rarest`]); always followed by the scan's condition, which confirms them.
pub const CANDIDATES: &str =
    "rid IN (SELECT rowid FROM decisions_search WHERE decisions_search MATCH ?)";

/// The distinct trigrams of the folded term, in order, each quoted for FTS5 (a quoted string is
/// literal to FTS5: no operator, column filter or prefix reads in it); of a term with more than
/// [`PROBED`], that many spread over it. Trigrams holding a NUL are left out (a candidate set only
/// grows by leaving one out; the scan's condition confirms). Empty when the term has fewer than
/// three characters: it must be scanned for.
pub fn trigrams(term: &str) -> Vec<String> {
    let folded: Vec<char> = term.to_lowercase().chars().collect();
    let mut seen = std::collections::HashSet::new();
    let mut distinct: Vec<String> = Vec::new();
    for w in folded.windows(3) {
        if w.contains(&'\0') {
            continue;
        }
        let quoted = quote(&w.iter().collect::<String>());
        if seen.insert(quoted.clone()) {
            distinct.push(quoted);
        }
    }
    let n = distinct.len();
    if n <= PROBED {
        return distinct;
    }
    // Evenly spaced, the first and the last among them (n > PROBED: no index twice).
    (0..PROBED)
        .map(|k| distinct[k * (n - 1) / (PROBED - 1)].clone())
        .collect()
}

/// Trigrams of a term counted ([`PROBE`]) at most: a term of more (a value pasted whole, or a
/// hostile one of hundreds of kilobytes) is narrowed by these as well as by all, which would cost
/// a query each.
pub const PROBED: usize = 64;

/// How many entries hold one quoted trigram, counted up to [`PROBE_CAP`] (parameters: the
/// trigram, the cap). Reading a common trigram's whole list (`@co`, `con`: every entry of a
/// domain) costs milliseconds at a million entries; asking only rare trigrams and confirming the
/// candidates is what makes a whole-UPN search fast.
pub const PROBE: &str =
    "SELECT count(*) FROM (SELECT 1 FROM decisions_search WHERE decisions_search MATCH ? LIMIT ?)";

/// Where [`PROBE`] stops counting: a trigram held by more entries is "common".
pub const PROBE_CAP: i64 = 2_000;

/// Trigrams a search asks the index for at most when some are rare: the rarest of the term's.
pub const ASKED: usize = 3;

/// Trigrams a search asks for when every one of the term's is common (a SID's `s-1`, `-1-` and
/// digits): spread over the term, as neighbours tend to occur together.
pub const ASKED_COMMON: usize = 6;

/// The FTS5 query for a term whose quoted trigrams (in the term's order) [`PROBE`] counted:
/// the rarest [`ASKED`] of those below [`PROBE_CAP`] (their candidates are at most that many);
/// when there is none, [`ASKED_COMMON`] spread over the term. All required; `None` when there is
/// no trigram.
pub fn rarest(counted: Vec<(String, i64)>) -> Option<String> {
    let mut rare: Vec<&(String, i64)> = counted.iter().filter(|(_, n)| *n < PROBE_CAP).collect();
    let asked: Vec<&str> = if rare.is_empty() {
        let n = counted.len();
        let k = ASKED_COMMON.min(n);
        let mut picks: Vec<usize> = (0..k)
            .map(|i| if k > 1 { i * (n - 1) / (k - 1) } else { 0 })
            .collect();
        picks.dedup();
        picks.into_iter().map(|i| counted[i].0.as_str()).collect()
    } else {
        rare.sort_by_key(|(_, n)| *n);
        rare.iter().take(ASKED).map(|(t, _)| t.as_str()).collect()
    };
    (!asked.is_empty()).then(|| asked.join(" AND "))
}

/// The trigrams of an indexed text as both backends' vocabularies record them (SQLite's FTS5
/// trigram tokenizer's: every three code points in a row, line feeds included): a term of one or
/// two characters in the text is inside at least one of them (the text joins eight values by
/// seven line feeds, so it has at least three code points).
pub fn trigrams_of(text: &str) -> impl Iterator<Item = [char; 3]> + '_ {
    let mut it = text.chars();
    let (mut a, mut b) = (it.next(), it.next());
    it.filter_map(move |c| {
        let t = a.zip(b).map(|(x, y)| [x, y, c]);
        (a, b) = (b, Some(c));
        t
    })
}

/// The `LIKE` patterns (over the searched text, `\\` escaping) whose matches hold every
/// occurrence of a folded short term, from the vocabulary's trigrams that contain it (`found`,
/// all of them): for one character, each trigram inside `%…%`. For two, one family suffices:
/// every occurrence but one at the text's end is the start of a trigram (those starting with the
/// term, and the end-anchored `%term`), and every one but one at its start the end of a trigram
/// (those ending with it, and `term%`). pg_trgm reads only letters and digits (it splits words at
/// anything else), so a trigram such as `\n=g` asks it for every word starting with `g`: the
/// family with fewer trigrams holding some other character is asked, then the one with fewer
/// trigrams. Empty when no trigram holds the term (no text does).
pub fn short_patterns(folded: &str, found: &[String]) -> Vec<String> {
    let inside = |w: &str| crate::codec::like_pattern_as_typed(w);
    let n = folded.chars().count();
    if n != 2 || found.is_empty() {
        return found.iter().map(|w| inside(w)).collect();
    }
    let weak = |ws: &[&String]| {
        ws.iter()
            .filter(|w| {
                w.replacen(folded, "", 1)
                    .chars()
                    .any(|c| !c.is_alphanumeric())
            })
            .count()
    };
    let starting: Vec<&String> = found.iter().filter(|w| w.starts_with(folded)).collect();
    let ending: Vec<&String> = found.iter().filter(|w| w.ends_with(folded)).collect();
    let pattern = inside(folded);
    let by_start = (weak(&starting), starting.len()) <= (weak(&ending), ending.len());
    let (family, anchored) = if by_start {
        // `%term`: the term at the text's end.
        (starting, pattern[..pattern.len() - 1].to_string())
    } else {
        // `term%`: the term at the text's start.
        (ending, pattern[1..].to_string())
    };
    family
        .into_iter()
        .map(|w| inside(w))
        .chain(std::iter::once(anchored))
        .collect()
}

/// Trigrams a short term's search asks the index for at most ([`crate::query::terms_containing`]).
pub const SHORT_TERMS: usize = 64;

/// Entries a short term's trigrams may hold in all ([`PROBE`] each) for the index to be asked;
/// beyond it the term is common, its matches dense, and the scan fills a page sooner.
pub const SHORT_CAP: i64 = 20_000;

/// Entries a short term's trigrams may hold in all for a count up to a cap (`total_upto`) to read
/// the index rather than scan: the count confirms candidates until its cap, which pays while they
/// are not many more than the matches.
pub const COUNT_CAP: i64 = 100_000;

/// A term of fewer than three characters folded as the index is, `None` when the index cannot
/// serve it (empty, three characters or more, or a NUL or line feed in it, which no trigram
/// asked for can hold).
pub fn short(term: &str) -> Option<String> {
    let folded = term.to_lowercase();
    let n = folded.chars().count();
    ((1..3).contains(&n) && !folded.contains(['\0', '\n'])).then_some(folded)
}

/// The FTS5 query for a short term from the quoted trigrams that contain it ([`crate::query::terms_containing`],
/// [`quote`]) and how many entries hold each ([`PROBE`]): any of them, when they are at most
/// [`SHORT_TERMS`] and hold fewer than [`SHORT_CAP`] entries in all; `None` when the term is that
/// common. No trigram (the term is in no indexed value): `Some("")`, which finds nothing.
pub fn any_of(counted: &[(String, i64)]) -> Option<String> {
    any_of_upto(counted, SHORT_CAP)
}

/// [`any_of`] with another cap than [`SHORT_CAP`] on the entries the trigrams hold in all.
pub fn any_of_upto(counted: &[(String, i64)], cap: i64) -> Option<String> {
    let held: i64 = counted.iter().map(|(_, n)| n).sum();
    if counted.len() > SHORT_TERMS || held >= cap {
        return None;
    }
    Some(
        counted
            .iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>()
            .join(" OR "),
    )
}

/// One trigram quoted for FTS5: literal, no operator, column filter or prefix reads in it.
pub fn quote(trigram: &str) -> String {
    format!("\"{}\"", trigram.replace('"', "\"\""))
}

/// What one [`chunk`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Some work was done and more may remain.
    More,
    /// The index is whole for every profile and holds no entry of a deleted decision.
    Whole,
}

/// One chunk of the indexer, in one write transaction on `c` (the writer).
pub fn chunk(c: &mut Connection) -> rusqlite::Result<Step> {
    chunk_with(c, BULK)
}

/// [`chunk`], with `decisions_order`'s indexes dropped once a pass has written `bulk` rows
/// (tests ask for a small number).
pub fn chunk_with(c: &mut Connection, bulk: i64) -> rusqlite::Result<Step> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let step = chunk_in(&tx, bulk)?;
    tx.commit()?;
    Ok(step)
}

fn chunk_in(tx: &rusqlite::Transaction<'_>, bulk: i64) -> rusqlite::Result<Step> {
    // 1. Entries of deleted decisions, unless the rid was taken again (its own pass replaces it).
    let gone: Vec<i64> = {
        let mut st =
            tx.prepare_cached("SELECT rid FROM decisions_search_gone ORDER BY rid LIMIT ?")?;
        st.query_map([ROWS], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    if !gone.is_empty() {
        let mut del = tx.prepare_cached(
            "DELETE FROM decisions_search WHERE rowid = ?1 AND NOT EXISTS (SELECT 1 FROM decisions WHERE rid = ?1)",
        )?;
        let mut done = tx.prepare_cached("DELETE FROM decisions_search_gone WHERE rid = ?")?;
        for rid in gone {
            del.execute([rid])?;
            done.execute([rid])?;
        }
        return Ok(Step::More);
    }

    // 2. The first profile whose mark is behind its plan.
    type Behind = (String, i64, i64, Option<i64>, i64, i64);
    let behind: Option<Behind> = tx
        .prepare_cached(
            "SELECT p.profile, p.cycle_id, coalesce(s.indexed_cycle, 0), s.pass_cycle, coalesce(s.pass_rid, 0), \
             coalesce(s.pass_rows, 0) FROM plans p LEFT JOIN decisions_search_state s ON s.profile = p.profile \
             WHERE coalesce(s.indexed_cycle, 0) < p.cycle_id ORDER BY p.profile LIMIT 1",
        )?
        .query_row([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .optional()?;
    let Some((profile, plan_cycle, mark, pass, from, written)) = behind else {
        // 3. The first of `decisions_order`'s indexes missing, built (seconds at a million).
        let present: Vec<String> = {
            let mut st = tx.prepare_cached(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'decisions_order'",
            )?;
            st.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let missing = ORDER_INDEXES
            .iter()
            .find(|(name, _)| !present.iter().any(|p| p == name));
        return match missing {
            Some((name, col)) => {
                tx.execute_batch(&format!(
                    "CREATE INDEX {name} ON decisions_order (o_profile, o_status, {col}, o_kind, o_source_id)"
                ))?;
                Ok(Step::More)
            }
            None => Ok(Step::Whole),
        };
    };
    // A pass goes on towards the target it started with (rows changed by a later cycle meanwhile
    // carry that cycle's id: the next pass takes them).
    let (target, from, written) = match pass {
        Some(t) if t > mark => (t, from, written),
        _ => (plan_cycle, 0, 0),
    };
    type Order = (String, String, String, String, String, String, String, i64);
    let rows: Vec<(i64, String, Order)> = {
        let mut st = tx.prepare_cached(&format!(
            "SELECT rid, {TERMS}, {ORDER_VALUES} FROM decisions WHERE rid > ?1 AND rid <= ?1 + ?2 AND profile = ?3 \
             AND changed_cycle > ?4 AND changed_cycle <= ?5 ORDER BY rid LIMIT ?6"
        ))?;
        st.query_map(params![from, SPAN, profile, mark, target, ROWS], |r| {
            let o = (
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
            );
            Ok((r.get(0)?, r.get(1)?, o))
        })?
        .collect::<rusqlite::Result<_>>()?
    };
    let started = std::time::Instant::now();
    let mut done = 0;
    {
        let mut put = tx.prepare_cached(
            "INSERT OR REPLACE INTO decisions_search (rowid, terms) VALUES (?, ?)",
        )?;
        let mut order = tx.prepare_cached(ORDER)?;
        let mut term =
            tx.prepare_cached("INSERT OR IGNORE INTO decisions_search_terms (term) VALUES (?)")?;
        let mut seen: std::collections::HashSet<[char; 3]> = std::collections::HashSet::new();
        for (rid, terms, o) in &rows {
            put.execute(params![rid, terms])?;
            order.execute(params![rid, o.0, o.1, o.2, o.3, o.4, o.5, o.6, o.7])?;
            // The trigrams FTS5's trigram tokenizer makes of it, for the searches of one or two
            // characters.
            for t in trigrams_of(terms) {
                if seen.insert(t) {
                    term.execute([t.iter().collect::<String>()])?;
                }
            }
            done += 1;
            if started.elapsed() >= BUDGET {
                break;
            }
        }
    }
    // A pass that has written `bulk` rows is a large one: the rest of its rows go to
    // `decisions_order` without its indexes (listings sort the decisions themselves meanwhile),
    // and they are built after it ([`ORDER_INDEXES`]). Counted as the pass goes: counting a
    // profile's changed rows first read every row of it (3.4 s at a million).
    let now_written = written + done as i64;
    if written < bulk && now_written >= bulk {
        for (name, _) in ORDER_INDEXES {
            tx.execute_batch(&format!("DROP INDEX IF EXISTS {name}"))?;
        }
    }
    let reached = if done < rows.len() || rows.len() as i64 == ROWS {
        // Stopped by the budget or the row limit: on from the last row indexed.
        rows[..done].last().map_or(from + SPAN, |r| r.0)
    } else {
        from + SPAN
    };
    let last: i64 = tx.query_row("SELECT coalesce(max(rid), 0) FROM decisions", [], |r| {
        r.get(0)
    })?;
    let mut save = tx.prepare_cached(
        "INSERT INTO decisions_search_state (profile, indexed_cycle, pass_cycle, pass_rid, pass_rows) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (profile) DO UPDATE SET indexed_cycle = excluded.indexed_cycle, pass_cycle = excluded.pass_cycle, \
         pass_rid = excluded.pass_rid, pass_rows = excluded.pass_rows",
    )?;
    if reached >= last {
        save.execute(params![profile, target, Option::<i64>::None, 0, 0])?;
    } else {
        save.execute(params![profile, mark, target, reached, now_written])?;
    }
    Ok(Step::More)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Catches: FTS5 syntax in a term read as syntax (a quote ending the string, `OR`, `*`, `^`,
    /// `NEAR`), a term folded otherwise than the index (upper case, non-ASCII), repeated trigrams
    /// asked twice, a term of fewer than three characters given to the index, the common
    /// trigrams asked instead of the rare ones, and every trigram of a long term counted.
    #[test]
    fn searches_ask_the_rarest_quoted_trigrams_of_the_folded_term() {
        assert!(trigrams("ab").is_empty());
        assert_eq!(trigrams("ZOË"), ["\"zoë\""]);
        assert_eq!(trigrams("a\"b\""), ["\"a\"\"b\"", "\"\"\"b\"\"\""]);
        assert_eq!(trigrams("aaaa"), ["\"aaa\""], "each trigram once");
        assert_eq!(
            trigrams("x OR y"),
            ["\"x o\"", "\" or\"", "\"or \"", "\"r y\""]
        );
        assert!(trigrams("a\0b").is_empty());
        let long: String = (0..1_000)
            .map(|i| char::from_u32(0x4E00 + i).unwrap())
            .collect();
        let spread = trigrams(&long);
        assert_eq!(spread.len(), PROBED, "a long term: at most PROBED");
        assert_eq!(spread[0], quote("一丁丂"), "its first");
        assert_eq!(
            spread[PROBED - 1],
            trigrams(&long[long.len() - 9..])[0],
            "its last"
        );
        assert!(
            spread
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len()
                == PROBED,
            "none twice"
        );
        let counted = vec![
            ("\"@co\"".to_string(), 2000),
            ("\"k62\"".to_string(), 120),
            ("\"con\"".to_string(), 2000),
            ("\"62@\"".to_string(), 1600),
            ("\"par\"".to_string(), 1999),
            ("\"ann\"".to_string(), 5),
        ];
        assert_eq!(
            rarest(counted).as_deref(),
            Some("\"ann\" AND \"k62\" AND \"62@\""),
            "the rarest three, commonest left out"
        );
        let common: Vec<(String, i64)> = (0..20).map(|i| (format!("\"t{i:02}\""), 2000)).collect();
        assert_eq!(
            rarest(common).as_deref(),
            Some("\"t00\" AND \"t03\" AND \"t07\" AND \"t11\" AND \"t15\" AND \"t19\""),
            "all common: spread over the term, not its first three"
        );
        let two: Vec<(String, i64)> = (0..2).map(|i| (format!("\"t{i}\""), 2000)).collect();
        assert_eq!(rarest(two).as_deref(), Some("\"t0\" AND \"t1\""));
        assert_eq!(rarest(Vec::new()), None);
    }

    /// Catches: a two-character term asked of pg_trgm by a trigram it splits at a non-word
    /// character (`\n=g`: every word starting with `g`) when the other family serves it, a family
    /// without its anchored pattern (an occurrence at the text's start or end missed), `LIKE`'s
    /// wildcards in a trigram left unescaped, and a one-character term not asked by every trigram.
    #[test]
    fn short_patterns_take_one_family_and_its_anchor() {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            short_patterns("=g", &w(&["\n=g", "=ga"])),
            ["%=ga%", "%=g"],
            "the trigram starting with the term, and the end"
        );
        assert_eq!(
            short_patterns("n9", &w(&["an9", "n9.", "n90", "on9"])),
            ["%an9%", "%on9%", "n9%"],
            "the trigrams ending with it, and the start"
        );
        assert_eq!(
            short_patterns("_%", &w(&["a_%"])),
            ["%\\_\\%"],
            "no trigram starts with it: only at the end, escaped"
        );
        assert_eq!(short_patterns("ë", &w(&["zoë", "ël "])), ["%zoë%", "%ël %"]);
        assert!(short_patterns("ab", &[]).is_empty(), "in no text");
    }

    /// Catches: a short term folded otherwise than the index, a term the index cannot hold (a
    /// line feed or NUL, three characters) asked of it, trigrams OR-ed unquoted, a common term
    /// (too many trigrams, or too many entries) asked of the index instead of scanned, and a term
    /// in no trigram answered by a scan instead of "nothing".
    #[test]
    fn short_terms_ask_any_trigram_that_contains_them_unless_common() {
        assert_eq!(short("Ë").as_deref(), Some("ë"));
        assert_eq!(short("SM").as_deref(), Some("sm"));
        for no in ["", "abc", "a\n", "\0", "a\0"] {
            assert_eq!(short(no), None, "{no:?}");
        }
        let q = |t: &str, n| (quote(t), n);
        assert_eq!(
            any_of(&[q("smi", 3), q("\"sm", 1)]).as_deref(),
            Some("\"smi\" OR \"\"\"sm\"")
        );
        assert_eq!(any_of(&[q("smi", SHORT_CAP - 1), q("asm", 1)]), None);
        // A capped count asks the index up to its own cap (`ë`: too common for a page's, not
        // for a count up to 1,000's).
        assert!(any_of_upto(&[q("smi", SHORT_CAP - 1), q("asm", 1)], COUNT_CAP).is_some());
        assert_eq!(any_of_upto(&[q("smi", COUNT_CAP)], COUNT_CAP), None);
        let many: Vec<(String, i64)> = (0..=SHORT_TERMS)
            .map(|i| q(&format!("{i:03}"), 1))
            .collect();
        assert_eq!(any_of(&many), None);
        assert!(any_of(&many[..SHORT_TERMS]).is_some());
        assert_eq!(
            any_of(&[]).as_deref(),
            Some(""),
            "nothing to ask: nothing found"
        );
    }
}
