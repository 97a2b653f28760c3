//! The sync plan: every decision of the match stage and every write an export would make.
//!
//! The plan *is* the What-If report. Its [`Plan::hash`] covers the profile's fingerprint and the exact
//! writes, so an approval is for one set of writes under one configuration: when either changes, the
//! next export needs a new approval. A plan with no writes needs none.
//!
//! Decisions are persisted by difference: [`DecisionRecord::hash`] fingerprints what a decision row
//! holds, and [`diff`] compares the new plan with the stored fingerprints, so a steady-state cycle
//! writes only what changed (and logs only what changed).

use crate::config::{SyncMode, SyncProfile, hex};
use crate::matching::{Decision, Outcome, match_kind};
use crate::model::{AttrRef, DirObject, Fnv, ObjectKind};
use crate::transform::apply_all;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// How a decision came out, as stored and reported.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Matched,
    Unmatched,
    Ambiguous,
    Conflict,
    /// Matched, but the translation would name a privileged principal (root, the system range, an
    /// administrative SID): left out of the translation table.
    Refused,
    /// Excluded from the profile by an operator.
    Excluded,
    /// Pinned by an operator, but the pin cannot hold (its source or target is gone, or its target
    /// is matched or pinned from another source): not in the table.
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Matched => "matched",
            Status::Unmatched => "unmatched",
            Status::Ambiguous => "ambiguous",
            Status::Conflict => "conflict",
            Status::Refused => "refused",
            Status::Excluded => "excluded",
            Status::Error => "error",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "matched" => Some(Status::Matched),
            "unmatched" => Some(Status::Unmatched),
            "ambiguous" => Some(Status::Ambiguous),
            "conflict" => Some(Status::Conflict),
            "refused" => Some(Status::Refused),
            "excluded" => Some(Status::Excluded),
            "error" => Some(Status::Error),
            _ => None,
        }
    }
}

/// Counts for one kind.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCounts {
    pub matched: u64,
    pub unmatched: u64,
    pub ambiguous: u64,
    pub conflict: u64,
    #[serde(default)]
    pub refused: u64,
    #[serde(default)]
    pub excluded: u64,
    #[serde(default)]
    pub errors: u64,
}

/// A plan's numbers, per kind and in total.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub source_objects: u64,
    pub target_objects: u64,
    pub matched: u64,
    pub unmatched: u64,
    /// Ambiguous and conflicting decisions together.
    pub ambiguous: u64,
    /// Matches refused because they name a privileged principal.
    #[serde(default)]
    pub refused: u64,
    /// Source objects operators excluded from the profile.
    #[serde(default)]
    pub excluded: u64,
    /// Pins that cannot hold (and overrides that name no object): errors to resolve.
    #[serde(default)]
    pub errors: u64,
    pub creates: u64,
    pub updates: u64,
    pub by_kind: BTreeMap<ObjectKind, KindCounts>,
    /// The writes by kind: what an approval authorises (empty in plans stored before it was
    /// counted).
    #[serde(default)]
    pub writes_by_kind: BTreeMap<ObjectKind, WriteCounts>,
}

/// The writes of one kind, in disjoint classes (`creates + updates + member_changes` is the
/// kind's number of writes), and how many members they add.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteCounts {
    /// Objects created in the target.
    pub creates: u64,
    /// Updates of attributes only.
    pub updates: u64,
    /// Updates that add members to a group (whether or not they change attributes too).
    pub member_changes: u64,
    /// Members added, by creates and member changes together.
    pub members_added: u64,
}

impl WriteCounts {
    /// The counts of `writes`, by kind.
    pub fn of(writes: &[Write]) -> BTreeMap<ObjectKind, WriteCounts> {
        let mut out: BTreeMap<ObjectKind, WriteCounts> = BTreeMap::new();
        for w in writes {
            let c = out.entry(w.kind()).or_default();
            match w {
                Write::Create { members, .. } => {
                    c.creates += 1;
                    c.members_added += members.len() as u64;
                }
                Write::Update { changes, .. } => {
                    match changes.iter().find(|ch| ch.attribute == "members") {
                        // Members are only ever added (see `writes`).
                        Some(m) => {
                            c.member_changes += 1;
                            c.members_added += m.new.len().saturating_sub(m.old.len()) as u64;
                        }
                        None => c.updates += 1,
                    }
                }
            }
        }
        out
    }
}

/// One attribute an update changes: its value(s) before and after.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrChange {
    pub attribute: String,
    pub old: Vec<String>,
    pub new: Vec<String>,
}

/// A write an export would make to the target directory.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Write {
    /// Create the unmatched `source_id` in the target with these attributes (ferry's or the
    /// directory's names); groups list their members as target object ids.
    Create {
        kind: ObjectKind,
        source_id: String,
        name: String,
        attributes: BTreeMap<String, Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        members: Vec<String>,
    },
    /// Change attributes of the matched target object. `members` changes list target object ids.
    Update {
        kind: ObjectKind,
        source_id: String,
        target_id: String,
        name: String,
        changes: Vec<AttrChange>,
    },
}

impl Write {
    pub fn op(&self) -> &'static str {
        match self {
            Write::Create { .. } => "create",
            Write::Update { .. } => "update",
        }
    }
    pub fn kind(&self) -> ObjectKind {
        match self {
            Write::Create { kind, .. } | Write::Update { kind, .. } => *kind,
        }
    }
    pub fn source_id(&self) -> &str {
        match self {
            Write::Create { source_id, .. } | Write::Update { source_id, .. } => source_id,
        }
    }
}

/// The result of the sync stage for one profile.
#[derive(Debug)]
pub struct Plan {
    pub profile: String,
    pub mode: SyncMode,
    pub fingerprint: String,
    /// Descriptions of the rules in force; decisions refer to them by position.
    pub rules: Vec<String>,
    pub decisions: Vec<Decision>,
    pub writes: Vec<Write>,
    pub counts: Counts,
    /// SHA-256 over the fingerprint and the writes: what an approval approves.
    pub hash: String,
    /// The profile's bound of the system range ([`crate::privileged`]).
    pub min_id: u32,
    /// Overrides that name no source object (or several): they decide nothing, and are errors.
    pub override_errors: Vec<String>,
}

impl Plan {
    pub fn needs_approval(&self) -> bool {
        !self.writes.is_empty()
    }
}

/// Runs the sync stage: match every kind of the profile, then compute the writes of its mode.
pub fn build(
    profile: &SyncProfile,
    fingerprint: &str,
    sources: &[DirObject],
    targets: &[DirObject],
) -> Plan {
    let rules = profile.effective_rules();
    let mut descriptions: Vec<String> = rules.iter().map(|r| r.describe()).collect();
    let mut decisions = Vec::new();
    let mut counts = Counts::default();
    let mut resolved = vec![false; profile.overrides.len()];
    let mut override_errors = Vec::new();
    for &kind in &profile.object_types {
        let mut d = match_kind(kind, &rules, sources, targets);
        apply_overrides(
            profile,
            kind,
            sources,
            targets,
            &mut d,
            &mut descriptions,
            &mut resolved,
            &mut override_errors,
        );
        for x in &mut d {
            if let Outcome::Matched { target, rule } = x.outcome
                && refusal(
                    &sources[x.source as usize],
                    &targets[target as usize],
                    profile.min_id,
                )
                .is_some()
            {
                x.outcome = Outcome::Refused { target, rule };
            }
        }
        let kc = counts.by_kind.entry(kind).or_default();
        for x in &d {
            match x.outcome {
                Outcome::Matched { .. } => kc.matched += 1,
                Outcome::Unmatched => kc.unmatched += 1,
                Outcome::Ambiguous { .. } => kc.ambiguous += 1,
                Outcome::Conflict { .. } => kc.conflict += 1,
                Outcome::Refused { .. } => kc.refused += 1,
                Outcome::Excluded { .. } => kc.excluded += 1,
                Outcome::Broken { .. } => kc.errors += 1,
            }
        }
        decisions.extend(d);
    }
    for (o, done) in profile.overrides.iter().zip(&resolved) {
        if !done {
            override_errors.push(format!(
                "{} `{}` cannot hold: no {} of directory {} has `{}` as id, UPN, mail, SID or name",
                if o.exclude {
                    "the exclude of"
                } else {
                    "the pin of"
                },
                o.source,
                kinds(&profile.object_types),
                profile.source,
                o.source
            ));
        }
    }
    counts.source_objects = sources
        .iter()
        .filter(|o| profile.object_types.contains(&o.kind))
        .count() as u64;
    counts.target_objects = targets
        .iter()
        .filter(|o| profile.object_types.contains(&o.kind))
        .count() as u64;
    for kc in counts.by_kind.values() {
        counts.matched += kc.matched;
        counts.unmatched += kc.unmatched;
        counts.ambiguous += kc.ambiguous + kc.conflict;
        counts.refused += kc.refused;
        counts.excluded += kc.excluded;
        counts.errors += kc.errors;
    }
    counts.errors += override_errors.len() as u64;
    let writes = if profile.mode == SyncMode::MatchOnly {
        Vec::new()
    } else {
        writes(profile, &decisions, sources, targets)
    };
    counts.creates = writes
        .iter()
        .filter(|w| matches!(w, Write::Create { .. }))
        .count() as u64;
    counts.updates = writes.len() as u64 - counts.creates;
    counts.writes_by_kind = WriteCounts::of(&writes);
    let mut h = Sha256::new();
    h.update(fingerprint.as_bytes());
    h.update(serde_json::to_vec(&writes).unwrap_or_default());
    Plan {
        profile: profile.name.clone(),
        mode: profile.mode,
        fingerprint: fingerprint.to_string(),
        rules: descriptions,
        decisions,
        writes,
        counts,
        hash: hex(&h.finalize()),
        min_id: profile.min_id,
        override_errors,
    }
}

fn kinds(k: &[ObjectKind]) -> String {
    k.iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The objects of `kind` that a look-up key names: by id exactly, or by UPN, mail, SID or name
/// ignoring case.
/// The objects of `kinds` each key names, in one pass over `objects`: those whose id is the key
/// exactly, else those whose UPN, mail, SID or name is the key with case ignored (the single
/// object report's look-up). Overrides are resolved with it when a plan is built and when an
/// operator enters one (so an ambiguous key is refused then, with these candidates).
pub fn resolve_keys(objects: &[DirObject], kinds: &[ObjectKind], keys: &[&str]) -> Vec<Vec<u32>> {
    use crate::transform::lowercase;
    use std::borrow::Cow;
    let mut exact: FxHashMap<&str, Vec<usize>> = FxHashMap::default();
    let mut folded: FxHashMap<String, Vec<usize>> = FxHashMap::default();
    for (k, key) in keys.iter().enumerate() {
        let key = key.trim();
        exact.entry(key).or_default().push(k);
        folded
            .entry(lowercase(Cow::Borrowed(key)).into_owned())
            .or_default()
            .push(k);
    }
    let mut by_id = vec![Vec::new(); keys.len()];
    let mut by_key: Vec<Vec<u32>> = vec![Vec::new(); keys.len()];
    for (i, o) in objects.iter().enumerate() {
        if !kinds.contains(&o.kind) {
            continue;
        }
        let i = i as u32;
        if let Some(ks) = exact.get(o.id.as_str()) {
            for &k in ks {
                by_id[k].push(i);
            }
        }
        for v in o.names() {
            if let Some(ks) = folded.get(lowercase(Cow::Borrowed(v)).as_ref()) {
                for &k in ks {
                    // An object whose UPN and mail are both the key is one candidate.
                    if by_key[k].last() != Some(&i) {
                        by_key[k].push(i);
                    }
                }
            }
        }
    }
    by_id
        .into_iter()
        .zip(by_key)
        .map(|(id, key)| if id.is_empty() { key } else { id })
        .collect()
}

/// Pins and excludes decide before the rules (`[[sync_profile.override]]`). A pin that cannot
/// hold becomes an error decision ([`Outcome::Broken`]) whose rule says why; every override
/// decision's rule names the operator and the reason.
#[allow(clippy::too_many_arguments)]
fn apply_overrides(
    profile: &SyncProfile,
    kind: ObjectKind,
    sources: &[DirObject],
    targets: &[DirObject],
    d: &mut [Decision],
    descriptions: &mut Vec<String>,
    resolved: &mut [bool],
    errors: &mut Vec<String>,
) {
    if profile.overrides.is_empty() {
        return;
    }
    let at: FxHashMap<u32, usize> = d.iter().enumerate().map(|(i, x)| (x.source, i)).collect();
    let mut rule = |text: String| {
        descriptions.push(text);
        (descriptions.len() - 1) as u16
    };
    // Resolve each override's source among this kind's sources (one pass for all of them).
    let keys: Vec<&str> = profile
        .overrides
        .iter()
        .map(|o| o.source.as_str())
        .collect();
    let found = resolve_keys(sources, &[kind], &keys);
    let mut mine: Vec<(usize, u32)> = Vec::new();
    let mut decided: FxHashMap<u32, usize> = FxHashMap::default();
    for (i, o) in profile.overrides.iter().enumerate() {
        if resolved[i] {
            continue;
        }
        match found[i].as_slice() {
            [] => {}
            [s] if at.contains_key(s) => {
                resolved[i] = true;
                if let Some(&first) = decided.get(s) {
                    errors.push(format!(
                        "the override of `{}` cannot hold: the override of `{}` names the same {kind} ({}); keep one",
                        o.source,
                        profile.overrides[first].source,
                        sources[*s as usize].id
                    ));
                    continue;
                }
                decided.insert(*s, i);
                mine.push((i, *s));
            }
            [_] => {}
            many => {
                resolved[i] = true;
                errors.push(format!(
                    "the override of `{}` cannot hold: it names {} {kind}s of directory {} ({}); name one by its id",
                    o.source,
                    many.len(),
                    profile.source,
                    many.iter().map(|&c| sources[c as usize].id.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    // Pins: resolve targets; a target claimed twice breaks both pins.
    let target_keys: Vec<&str> = mine
        .iter()
        .filter_map(|&(i, _)| profile.overrides[i].target.as_deref())
        .collect();
    let mut target_found = resolve_keys(targets, &[kind], &target_keys).into_iter();
    let mut pins: Vec<(usize, u32, Result<u32, String>)> = Vec::new();
    for &(i, s) in &mine {
        let o = &profile.overrides[i];
        let Some(t) = &o.target else { continue };
        let r = match target_found.next().unwrap_or_default().as_slice() {
            [] => Err(format!(
                "target `{t}` is not a {kind} of directory {}",
                profile.target
            )),
            [one] => Ok(*one),
            many => Err(format!(
                "target `{t}` names {} {kind}s of directory {} ({})",
                many.len(),
                profile.target,
                many.iter()
                    .map(|&c| targets[c as usize].id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        pins.push((i, s, r));
    }
    let overridden: FxHashSet<u32> = mine.iter().map(|&(_, s)| s).collect();
    let mut claims: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
    for (_, s, r) in &pins {
        if let Ok(t) = r {
            claims.entry(*t).or_default().push(*s);
        }
    }
    // Targets the rules give to sources no override decides.
    let mut matched: FxHashMap<u32, u32> = FxHashMap::default();
    for x in d.iter().filter(|x| !overridden.contains(&x.source)) {
        if let Outcome::Matched { target, .. } | Outcome::Refused { target, .. } = x.outcome {
            matched.insert(target, x.source);
        }
    }
    for (i, s, r) in pins {
        let o = &profile.overrides[i];
        let r = r.and_then(|t| {
            if let Some(others) = claims.get(&t).filter(|c| c.len() > 1) {
                let others: Vec<&str> = others
                    .iter()
                    .filter(|&&x| x != s)
                    .map(|&x| sources[x as usize].id.as_str())
                    .collect();
                Err(format!(
                    "its target is also pinned from {}",
                    others.join(", ")
                ))
            } else if let Some(&other) = matched.get(&t) {
                Err(format!(
                    "its target is also matched from {} by the rules",
                    sources[other as usize].id
                ))
            } else {
                Ok(t)
            }
        });
        d[at[&s]].outcome = match r {
            Ok(target) => Outcome::Matched {
                target,
                rule: rule(o.describe()),
            },
            Err(why) => Outcome::Broken {
                rule: rule(format!("{} (cannot hold: {why})", o.describe())),
            },
        };
    }
    for &(i, s) in &mine {
        let o = &profile.overrides[i];
        if o.exclude {
            d[at[&s]].outcome = Outcome::Excluded {
                rule: rule(o.describe()),
            };
        }
    }
}

/// Why the match of `source` to `target` may not be translated (a privileged uid, gid or SID).
pub fn refusal(source: &DirObject, target: &DirObject, min_id: u32) -> Option<String> {
    crate::privileged::refusal(
        (source.uid_number, source.gid_number, source.sid.as_deref()),
        (target.uid_number, target.gid_number, target.sid.as_deref()),
        min_id,
    )
}

fn mapped_values(map: &crate::config::AttributeMap, src: &DirObject) -> Vec<String> {
    if let Some(v) = &map.value {
        return vec![v.clone()];
    }
    let attr = AttrRef::parse(map.source.as_deref().unwrap_or_default());
    src.values(&attr)
        .iter()
        .map(|v| apply_all(&map.transforms, v).into_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

fn writes(
    profile: &SyncProfile,
    decisions: &[Decision],
    sources: &[DirObject],
    targets: &[DirObject],
) -> Vec<Write> {
    let maps = profile.effective_attributes();
    // Source id → target id for members that are already matched.
    let translated: FxHashMap<&str, &str> = decisions
        .iter()
        .filter_map(|d| match d.outcome {
            Outcome::Matched { target, .. } => Some((
                sources[d.source as usize].id.as_str(),
                targets[target as usize].id.as_str(),
            )),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for d in decisions {
        let src = &sources[d.source as usize];
        match &d.outcome {
            Outcome::Unmatched if src.kind != ObjectKind::Device => {
                let mut attributes = BTreeMap::new();
                for m in maps.iter().filter(|m| m.applies_to(src.kind)) {
                    let v = mapped_values(m, src);
                    if !v.is_empty() {
                        attributes.insert(AttrRef::parse(&m.target).canonical().to_string(), v);
                    }
                }
                let members = src
                    .members
                    .iter()
                    .filter_map(|m| translated.get(m.as_str()).map(|t| t.to_string()))
                    .collect();
                out.push(Write::Create {
                    kind: src.kind,
                    source_id: src.id.clone(),
                    name: src.name.clone(),
                    attributes,
                    members,
                });
            }
            Outcome::Matched { target, .. } if profile.mode == SyncMode::Update => {
                let tgt = &targets[*target as usize];
                let mut changes = Vec::new();
                for m in maps.iter().filter(|m| m.update && m.applies_to(src.kind)) {
                    let attr = AttrRef::parse(&m.target);
                    if attr == AttrRef::Id {
                        continue;
                    }
                    let new = mapped_values(m, src);
                    let old = tgt.values(&attr);
                    if !new.is_empty() && new != old {
                        changes.push(AttrChange {
                            attribute: attr.canonical().to_string(),
                            old,
                            new,
                        });
                    }
                }
                if src.kind == ObjectKind::Group {
                    // Add translated members the target group lacks; never remove (a target group may
                    // hold members of its own).
                    let have: FxHashSet<&str> = tgt.members.iter().map(String::as_str).collect();
                    let add: Vec<String> = src
                        .members
                        .iter()
                        .filter_map(|m| translated.get(m.as_str()))
                        .filter(|t| !have.contains(**t))
                        .map(|t| t.to_string())
                        .collect();
                    if !add.is_empty() {
                        let mut new = tgt.members.clone();
                        new.extend(add);
                        changes.push(AttrChange {
                            attribute: "members".into(),
                            old: tgt.members.clone(),
                            new,
                        });
                    }
                }
                if !changes.is_empty() {
                    out.push(Write::Update {
                        kind: src.kind,
                        source_id: src.id.clone(),
                        target_id: tgt.id.clone(),
                        name: src.name.clone(),
                        changes,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// One decision as stored: the source, how it came out, the target (or the candidates).
#[derive(Debug)]
pub struct DecisionRecord<'a> {
    pub source: &'a DirObject,
    pub status: Status,
    pub rule: Option<u16>,
    pub target: Option<&'a DirObject>,
    /// Ambiguous: the candidate target ids. Conflict: the other sources' ids.
    pub candidates: Vec<&'a str>,
    pub hash: u64,
}

impl<'a> DecisionRecord<'a> {
    pub fn new(
        d: &Decision,
        sources: &'a [DirObject],
        targets: &'a [DirObject],
    ) -> DecisionRecord<'a> {
        let source = &sources[d.source as usize];
        let (status, rule, target, candidates) = match &d.outcome {
            Outcome::Matched { target, rule } => (
                Status::Matched,
                Some(*rule),
                Some(&targets[*target as usize]),
                vec![],
            ),
            Outcome::Refused { target, rule } => (
                Status::Refused,
                Some(*rule),
                Some(&targets[*target as usize]),
                vec![],
            ),
            Outcome::Unmatched => (Status::Unmatched, None, None, vec![]),
            Outcome::Excluded { rule } => (Status::Excluded, Some(*rule), None, vec![]),
            Outcome::Broken { rule } => (Status::Error, Some(*rule), None, vec![]),
            Outcome::Ambiguous { rule, candidates } => (
                Status::Ambiguous,
                Some(*rule),
                None,
                candidates
                    .iter()
                    .map(|&c| targets[c as usize].id.as_str())
                    .collect(),
            ),
            Outcome::Conflict {
                target,
                rule,
                others,
            } => (
                Status::Conflict,
                Some(*rule),
                Some(&targets[*target as usize]),
                others
                    .iter()
                    .map(|&c| sources[c as usize].id.as_str())
                    .collect(),
            ),
        };
        let mut h = Fnv::new();
        let ident = |h: &mut Fnv, o: &DirObject| {
            h.write_str(&o.id);
            h.write_str(&o.name);
            h.write_opt(&o.upn);
            h.write_opt(&o.mail);
            h.write_opt(&o.sid);
            h.write_u64(o.uid_number.map_or(u64::MAX, u64::from));
            h.write_u64(o.gid_number.map_or(u64::MAX, u64::from));
        };
        h.write_str(source.kind.as_str());
        ident(&mut h, source);
        h.write_str(status.as_str());
        h.write_u64(rule.map_or(u64::MAX, u64::from));
        match target {
            Some(t) => ident(&mut h, t),
            None => h.write_u64(0),
        }
        for c in &candidates {
            h.write_str(c);
        }
        DecisionRecord {
            source,
            status,
            rule,
            target,
            candidates,
            hash: h.finish(),
        }
    }
}

/// The key of a stored decision.
pub type DecisionKey = (ObjectKind, String);

/// What changed between the stored decisions and a new plan.
pub struct DecisionDiff<'a> {
    /// New or changed decisions, with the status they had before (None: new).
    pub upserts: Vec<(DecisionRecord<'a>, Option<Status>)>,
    /// Decisions whose source object is gone (or left the profile's scope).
    pub removed: Vec<DecisionKey>,
}

/// Compares a plan's decisions with the stored `(hash, status)` of each key.
pub fn diff<'a>(
    plan: &Plan,
    sources: &'a [DirObject],
    targets: &'a [DirObject],
    stored: &FxHashMap<DecisionKey, (u64, Status)>,
) -> DecisionDiff<'a> {
    let mut upserts = Vec::new();
    let mut present: FxHashSet<(ObjectKind, &str)> = FxHashSet::default();
    present.reserve(plan.decisions.len());
    for d in &plan.decisions {
        let src = &sources[d.source as usize];
        present.insert((src.kind, src.id.as_str()));
        let prev = stored.get(&(src.kind, src.id.clone()));
        // Building the record hashes it; only records that differ are kept.
        let rec = DecisionRecord::new(d, sources, targets);
        match prev {
            Some((h, _)) if *h == rec.hash => {}
            Some((_, st)) => upserts.push((rec, Some(*st))),
            None => upserts.push((rec, None)),
        }
    }
    let removed = stored
        .keys()
        .filter(|(k, id)| !present.contains(&(*k, id.as_str())))
        .cloned()
        .collect();
    DecisionDiff { upserts, removed }
}

/// Severity of a message log entry.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "info" => Some(Level::Info),
            "warning" | "warn" => Some(Level::Warning),
            "error" => Some(Level::Error),
            _ => None,
        }
    }
}

/// A message log entry before it is stored.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub level: Level,
    /// Stable machine code: `unmatched`, `ambiguous`, `conflict`, `matched`, `import`, `export`, …
    pub code: String,
    pub directory: Option<String>,
    pub object_kind: Option<ObjectKind>,
    pub object_id: Option<String>,
    pub object_name: Option<String>,
    pub message: String,
}

impl LogEntry {
    pub fn info(code: &str, message: impl Into<String>) -> LogEntry {
        LogEntry {
            level: Level::Info,
            code: code.into(),
            directory: None,
            object_kind: None,
            object_id: None,
            object_name: None,
            message: message.into(),
        }
    }
    pub fn warning(code: &str, message: impl Into<String>) -> LogEntry {
        LogEntry {
            level: Level::Warning,
            ..LogEntry::info(code, message)
        }
    }
    pub fn error(code: &str, message: impl Into<String>) -> LogEntry {
        LogEntry {
            level: Level::Error,
            ..LogEntry::info(code, message)
        }
    }
    pub fn with_object(mut self, o: &DirObject) -> LogEntry {
        self.object_kind = Some(o.kind);
        self.object_id = Some(o.id.clone());
        self.object_name = Some(o.name.clone());
        self
    }
    pub fn with_directory(mut self, d: &str) -> LogEntry {
        self.directory = Some(d.to_string());
        self
    }
}

/// Message log entries for the decisions that changed: warnings for objects that became unmatched,
/// ambiguous or conflicting (with the rule and candidates), info for matches that replace an earlier
/// decision (first matches are counted in the cycle summary, not logged one by one).
pub fn decision_logs(plan: &Plan, diff: &DecisionDiff<'_>, source_dir: &str) -> Vec<LogEntry> {
    let rule = |r: Option<u16>| {
        r.and_then(|r| plan.rules.get(r as usize))
            .cloned()
            .unwrap_or_default()
    };
    // An override that names no object is logged every cycle until it is fixed or removed.
    let mut out: Vec<LogEntry> = plan
        .override_errors
        .iter()
        .map(|e| LogEntry::error("override", e.clone()).with_directory(source_dir))
        .collect();
    for (rec, prev) in &diff.upserts {
        let who = rec
            .source
            .upn
            .as_deref()
            .or(rec.source.mail.as_deref())
            .unwrap_or(&rec.source.name);
        let e = match rec.status {
            // A first match is not logged one by one (a first cycle of a million users would write a
            // million lines): the cycle's summary counts it and its decision row, shown in the
            // What-If report and the single object report, records the rule. A match that replaces
            // another decision is logged.
            Status::Matched if prev.is_none() => continue,
            Status::Matched => {
                let t = rec
                    .target
                    .map(|t| t.upn.as_deref().or(t.mail.as_deref()).unwrap_or(&t.name))
                    .unwrap_or_default();
                let verb = if prev.is_some_and(|p| p == Status::Matched) {
                    "now matched"
                } else {
                    "matched"
                };
                LogEntry::info(
                    "matched",
                    format!(
                        "{} {who} {verb} to {t} by rule {}",
                        rec.source.kind,
                        rule(rec.rule)
                    ),
                )
            }
            Status::Unmatched => LogEntry::warning(
                "unmatched",
                format!(
                    "{} {who} has no match in the target under any rule; it will not be translated",
                    rec.source.kind
                ),
            ),
            Status::Ambiguous => LogEntry::warning(
                "ambiguous",
                format!(
                    "{} {who} matches {} target objects by rule {}: {}",
                    rec.source.kind,
                    rec.candidates.len(),
                    rule(rec.rule),
                    rec.candidates.join(", ")
                ),
            ),
            Status::Refused => LogEntry::error(
                "refused",
                format!(
                    "{} {who} matches {} by rule {}, but {}; it is not translated",
                    rec.source.kind,
                    rec.target.map(|t| t.name.as_str()).unwrap_or_default(),
                    rule(rec.rule),
                    rec.target
                        .and_then(|t| refusal(rec.source, t, plan.min_id))
                        .unwrap_or_else(|| "it names a privileged principal".into())
                ),
            ),
            // Excluded objects are not warned about (an operator decided them).
            Status::Excluded => continue,
            Status::Error => LogEntry::error(
                "override",
                format!(
                    "{} {who} is not translated: {}",
                    rec.source.kind,
                    rule(rec.rule)
                ),
            ),
            Status::Conflict => LogEntry::warning(
                "conflict",
                format!(
                    "{} {who} and {} other source object(s) ({}) all match target {} by rule {}; none is translated",
                    rec.source.kind,
                    rec.candidates.len(),
                    rec.candidates.join(", "),
                    rec.target.map(|t| t.name.as_str()).unwrap_or_default(),
                    rule(rec.rule)
                ),
            ),
        };
        out.push(e.with_object(rec.source).with_directory(source_dir));
    }
    out
}

/// How a decision reads in its history: `target` is the target's label (UPN, mail or name) and
/// id, `rule` the deciding rule described, `candidates` the ambiguous targets or the conflicting
/// sources. The history's lines and the single object report's first line share this wording.
pub fn describe(
    status: Status,
    target: Option<(&str, &str)>,
    rule: &str,
    candidates: &[&str],
) -> String {
    match status {
        Status::Matched => {
            let t = target
                .map(|(label, id)| format!("{label} ({id})"))
                .unwrap_or_default();
            format!("matched to {t} by rule {rule}")
        }
        Status::Unmatched => "unmatched".to_string(),
        Status::Refused => format!(
            "refused: matches {} by rule {rule} but names a privileged principal",
            target.map(|(_, id)| id).unwrap_or_default()
        ),
        Status::Ambiguous => format!("ambiguous by rule {rule} ({} candidates)", candidates.len()),
        Status::Excluded => rule.to_string(),
        Status::Error => format!("error: {rule}"),
        Status::Conflict => format!("in conflict with {} by rule {rule}", candidates.join(", ")),
    }
}

/// History lines for decisions that changed since the last cycle (new decisions need none: the
/// decision row records the cycle that first made it).
pub fn history_lines(plan: &Plan, diff: &DecisionDiff<'_>) -> Vec<(ObjectKind, String, String)> {
    let rule = |r: Option<u16>| {
        r.and_then(|r| plan.rules.get(r as usize))
            .cloned()
            .unwrap_or_default()
    };
    let mut out: Vec<(ObjectKind, String, String)> = diff
        .upserts
        .iter()
        .filter_map(|(rec, prev)| {
            let prev = (*prev)?;
            let now = describe(
                rec.status,
                rec.target.map(|t| {
                    (
                        t.upn.as_deref().or(t.mail.as_deref()).unwrap_or(&t.name),
                        t.id.as_str(),
                    )
                }),
                &rule(rec.rule),
                &rec.candidates,
            );
            let change = if prev == rec.status && prev == Status::Matched {
                format!("identity changed; {now}")
            } else if prev == rec.status {
                format!("still {now}")
            } else {
                format!("{} → {now}", prev.as_str())
            };
            Some((rec.source.kind, rec.source.id.clone(), change))
        })
        .collect();
    out.extend(diff.removed.iter().map(|(k, id)| {
        (
            *k,
            id.clone(),
            "left the source directory or the profile's scope".to_string(),
        )
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Override};
    use proptest::prelude::*;

    fn cfg(mode: &str) -> Config {
        let src = format!(
            r#"
[[directory]]
name = "a"
kind = "file"
path = "a.json"
[[directory]]
name = "b"
kind = "file"
path = "b.json"
[[sync_profile]]
name = "p"
source = "a"
target = "b"
mode = "{mode}"
[[sync_profile.match]]
source_attribute = "mail"
target_attribute = "mail"
transforms = [{{ replace_suffix = ["@a", "@b"] }}]
object_types = ["user"]
[[sync_profile.match]]
source_attribute = "name"
target_attribute = "name"
object_types = ["group"]
"#
        );
        Config::parse(&src, "t").unwrap()
    }

    fn user(id: &str, mail: &str, name: &str) -> DirObject {
        let mut o = DirObject::new(ObjectKind::User, id, name);
        o.mail = Some(mail.into());
        o
    }

    fn fixture() -> (Vec<DirObject>, Vec<DirObject>) {
        let mut g = DirObject::new(ObjectKind::Group, "g1", "Sales");
        g.members = vec!["s1".into(), "s2".into()];
        let mut tg = DirObject::new(ObjectKind::Group, "tg1", "Sales");
        tg.members = vec!["t1".into()];
        (
            vec![
                user("s1", "ann@a", "Ann"),
                user("s2", "bob@a", "Bob"),
                user("s3", "cy@a", "Cy"),
                g,
                DirObject::new(ObjectKind::Group, "g2", "Ops"),
            ],
            vec![user("t1", "ann@b", "Ann B"), user("t2", "bob@b", "Bob"), tg],
        )
    }

    /// Would catch: two overrides of one object (ferry.toml names it by mail, an operator by id)
    /// both deciding it, the later silently winning.
    #[test]
    fn two_overrides_of_one_object_are_an_error_not_a_silent_choice() {
        let mut c = with_overrides(
            "[[sync_profile.override]]\nsource = \"CY@A\"\nexclude = true\nreason = \"contractor\"\n",
        );
        c.profiles[0].overrides.push(Override {
            source: "s3".into(),
            target: Some("t2".into()),
            exclude: false,
            reason: None,
            operator: "alice".into(),
        });
        let (s, t) = fixture();
        let p = build(&c.profiles[0], "fp", &s, &t);
        let (o, _) = outcome_of(&p, &s, "s3");
        assert!(
            matches!(o, Outcome::Excluded { .. }),
            "the first one decides: {o:?}"
        );
        assert_eq!(p.override_errors.len(), 1, "{:?}", p.override_errors);
        assert!(
            p.override_errors[0].contains("the override of `s3` cannot hold")
                && p.override_errors[0].contains("the override of `CY@A` names the same user"),
            "{:?}",
            p.override_errors
        );
    }

    fn key_object() -> impl Strategy<Value = DirObject> {
        let v = || {
            proptest::option::of(proptest::sample::select(vec![
                "ann@a",
                "ANN@A",
                "Ann",
                "Smith, Ann",
                "S-1-5-21-1-2-3-500",
                "ÅSA",
                "åsa",
                "x1",
            ]))
        };
        (
            proptest::sample::select(vec!["x1", "X1", "s1", "s2", "ann@a", "Ann"]),
            proptest::sample::select(vec!["Ann", "Smith, Ann", "ÅSA", "Bob"]),
            v(),
            v(),
            v(),
            proptest::bool::ANY,
        )
            .prop_map(|(id, name, upn, mail, sid, group)| {
                let mut o = DirObject::new(
                    if group {
                        ObjectKind::Group
                    } else {
                        ObjectKind::User
                    },
                    id,
                    name,
                );
                o.upn = upn.map(str::to_string);
                o.mail = mail.map(str::to_string);
                o.sid = sid.map(str::to_string);
                o
            })
    }

    proptest! {
        /// `resolve_keys` (one pass for all keys) names exactly what the rule says, key by key:
        /// the objects of the kinds whose id is the key, else those whose UPN, mail, SID or name
        /// is the key with case ignored, each once.
        #[test]
        fn resolve_keys_is_the_rule_for_every_key(
            objects in proptest::collection::vec(key_object(), 0..30),
            keys in proptest::collection::vec(proptest::sample::select(vec!["ann@a", "Ann", " Ann ", "x1", "X1", "smith, ann", "åsa", "nobody"]), 1..6),
        ) {
            let kinds = [ObjectKind::User];
            let got = resolve_keys(&objects, &kinds, &keys);
            for (k, key) in keys.iter().enumerate() {
                let key = key.trim();
                let of_kind = |o: &&DirObject| kinds.contains(&o.kind);
                let by_id: Vec<u32> = objects.iter().enumerate().filter(|(_, o)| of_kind(o) && o.id == key).map(|(i, _)| i as u32).collect();
                let want = if by_id.is_empty() {
                    objects.iter().enumerate()
                        .filter(|(_, o)| of_kind(o) && o.named_by(key))
                        .map(|(i, _)| i as u32)
                        .collect()
                } else {
                    by_id
                };
                prop_assert_eq!(&got[k], &want, "key {}", key);
            }
        }
    }

    fn with_overrides(toml: &str) -> Config {
        let base = cfg("match-only");
        let src = format!(
            "[[directory]]\nname = \"a\"\nkind = \"file\"\npath = \"a.json\"\n[[directory]]\nname = \"b\"\nkind = \"file\"\npath = \"b.json\"\n\
             [[sync_profile]]\nname = \"p\"\nsource = \"a\"\ntarget = \"b\"\nmode = \"match-only\"\n\
             [[sync_profile.match]]\nsource_attribute = \"mail\"\ntarget_attribute = \"mail\"\ntransforms = [{{ replace_suffix = [\"@a\", \"@b\"] }}]\nobject_types = [\"user\"]\n{toml}"
        );
        let c = Config::parse(&src, "t").unwrap();
        assert_eq!(c.profiles[0].rules, base.profiles[0].rules[..1]);
        c
    }

    fn outcome_of<'a>(p: &'a Plan, s: &[DirObject], id: &str) -> (&'a Outcome, String) {
        let d = p
            .decisions
            .iter()
            .find(|d| s[d.source as usize].id == id)
            .unwrap();
        let rule = match &d.outcome {
            Outcome::Matched { rule, .. }
            | Outcome::Excluded { rule }
            | Outcome::Broken { rule } => p.rules[*rule as usize].clone(),
            _ => String::new(),
        };
        (&d.outcome, rule)
    }

    /// Would catch: a pin ignored, decided after the rules, or not named in the rule column; an
    /// exclude that still warns; a pin whose target is gone or taken silently dropped.
    #[test]
    fn pins_and_excludes_decide_before_the_rules() {
        let c = with_overrides(
            "[[sync_profile.override]]\nsource = \"cy@a\"\ntarget = \"Ann B\"\nreason = \"mailbox renamed\"\n\
             [[sync_profile.override]]\nsource = \"s2\"\nexclude = true\nreason = \"service account\"\n",
        );
        let (s, t) = fixture();
        // Ann's rule match goes to t1 too: the pin of Cy to t1 cannot hold.
        let p = build(&c.profiles[0], "fp", &s, &t);
        let (o, rule) = outcome_of(&p, &s, "s3");
        assert!(matches!(o, Outcome::Broken { .. }), "{o:?}");
        assert!(
            rule.contains("pinned by config: mailbox renamed")
                && rule.contains("also matched from s1"),
            "{rule}"
        );
        let (o, rule) = outcome_of(&p, &s, "s2");
        assert!(
            matches!(o, Outcome::Excluded { .. }) && rule == "excluded by config: service account",
            "{rule}"
        );
        assert_eq!(
            (p.counts.excluded, p.counts.errors, p.counts.matched),
            (1, 1, 1)
        );
        let d = diff(&p, &s, &t, &FxHashMap::default());
        let logs = decision_logs(&p, &d, "a");
        assert!(
            !logs.iter().any(|l| l.message.contains("bob@a")),
            "an excluded object is not warned about: {logs:?}"
        );
        assert!(
            logs.iter().any(|l| l.level == Level::Error
                && l.message.contains("cy@a")
                && l.message.contains("cannot hold")),
            "{logs:?}"
        );

        // With Ann's mail changed (no rule match), the pin holds and says so.
        let (mut s, t) = fixture();
        s[0].mail = Some("ann.old@a".into());
        let p = build(&c.profiles[0], "fp", &s, &t);
        let (o, rule) = outcome_of(&p, &s, "s3");
        assert!(matches!(o, Outcome::Matched { target: 0, .. }), "{o:?}");
        assert_eq!(rule, "pinned by config: mailbox renamed");
        // The target deleted: the pin becomes an error, never silently dropped.
        let p = build(&c.profiles[0], "fp", &s, &t[1..]);
        let (o, rule) = outcome_of(&p, &s, "s3");
        assert!(
            matches!(o, Outcome::Broken { .. })
                && rule.contains("target `Ann B` is not a user of directory b"),
            "{rule}"
        );
        // The source deleted: an error of the plan.
        let p = build(&c.profiles[0], "fp", &s[1..], &t);
        assert!(p.override_errors.is_empty());
        let gone: Vec<DirObject> = s.iter().filter(|o| o.id != "s3").cloned().collect();
        let p = build(&c.profiles[0], "fp", &gone, &t);
        assert_eq!(p.override_errors.len(), 1, "{:?}", p.override_errors);
        assert!(
            p.override_errors[0].contains("`cy@a`"),
            "{:?}",
            p.override_errors
        );
        assert_eq!(p.counts.errors, 1);
    }

    /// Would catch: two pins onto one target both taken, and an override key naming several
    /// objects applied to one of them.
    #[test]
    fn pins_onto_one_target_and_ambiguous_keys_are_errors() {
        let c = with_overrides(
            "[[sync_profile.override]]\nsource = \"s1\"\ntarget = \"t2\"\n\
             [[sync_profile.override]]\nsource = \"s3\"\ntarget = \"bob@b\"\n",
        );
        let (s, t) = fixture();
        let p = build(&c.profiles[0], "fp", &s, &t);
        for id in ["s1", "s3"] {
            let (o, rule) = outcome_of(&p, &s, id);
            assert!(
                matches!(o, Outcome::Broken { .. }) && rule.contains("also pinned from"),
                "{id}: {rule}"
            );
        }
        let c =
            with_overrides("[[sync_profile.override]]\nsource = \"Smith, Ann\"\nexclude = true\n");
        let (mut s, t) = fixture();
        s[0].name = "Smith, Ann".into();
        s[2].name = "smith, ann".into();
        let p = build(&c.profiles[0], "fp", &s, &t);
        assert!(
            p.override_errors[0].contains("names 2 users")
                && p.override_errors[0].contains("s1, s3"),
            "{:?}",
            p.override_errors
        );
        assert_eq!(p.counts.excluded, 0);
    }

    /// Would catch: an override added or removed without a new approval (the fingerprint covers it).
    #[test]
    fn overrides_change_the_fingerprint_and_config_checks_them() {
        let a = with_overrides("");
        let b = with_overrides("[[sync_profile.override]]\nsource = \"s2\"\nexclude = true\n");
        assert_ne!(
            a.profile_fingerprint(&a.profiles[0]),
            b.profile_fingerprint(&b.profiles[0])
        );
        for (toml, want) in [
            (
                "source = \"s2\"\n",
                "give exactly one of `target` (a pin) or `exclude = true`",
            ),
            (
                "source = \"s2\"\ntarget = \"t1\"\nexclude = true\n",
                "give exactly one",
            ),
            ("source = \" \"\nexclude = true\n", "must not be empty"),
        ] {
            let src = format!(
                "[[directory]]\nname = \"a\"\nkind = \"file\"\npath = \"a.json\"\n[[directory]]\nname = \"b\"\nkind = \"file\"\npath = \"b.json\"\n\
                 [[sync_profile]]\nname = \"p\"\nsource = \"a\"\ntarget = \"b\"\nmode = \"match-only\"\n[[sync_profile.override]]\n{toml}"
            );
            let e = Config::parse(&src, "t").unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("override[0]"), "{toml}: {e}");
        }
        let dup = "[[directory]]\nname = \"a\"\nkind = \"file\"\npath = \"a.json\"\n[[directory]]\nname = \"b\"\nkind = \"file\"\npath = \"b.json\"\n\
                   [[sync_profile]]\nname = \"p\"\nsource = \"a\"\ntarget = \"b\"\nmode = \"match-only\"\n\
                   [[sync_profile.override]]\nsource = \"s2\"\nexclude = true\n[[sync_profile.override]]\nsource = \"S2\"\ntarget = \"t1\"\n";
        let e = Config::parse(dup, "t").unwrap_err().to_string();
        assert!(e.contains("already has an override (override[0])"), "{e}");
    }

    #[test]
    fn match_only_writes_nothing() {
        let c = cfg("match-only");
        let (s, t) = fixture();
        let p = build(&c.profiles[0], "fp", &s, &t);
        assert!(p.writes.is_empty());
        assert!(!p.needs_approval());
        assert_eq!(
            (p.counts.matched, p.counts.unmatched, p.counts.ambiguous),
            (3, 2, 0)
        );
    }

    /// Would catch: a translation table that gives a user's files to root or a system account
    /// (or root's to a user) because the target directory holds such an id.
    #[test]
    fn matches_naming_a_privileged_id_are_refused_and_logged() {
        let c = cfg("match-only");
        let (mut s, mut t) = fixture();
        s[0].name = "Smith, Ann".into();
        s[0].uid_number = Some(10_001);
        t[0].uid_number = Some(0);
        s[1].gid_number = Some(10_000);
        t[1].gid_number = Some(50);
        let p = build(&c.profiles[0], "fp", &s, &t);
        let refused: Vec<&str> = p
            .decisions
            .iter()
            .filter(|d| matches!(d.outcome, Outcome::Refused { .. }))
            .map(|d| s[d.source as usize].id.as_str())
            .collect();
        assert_eq!(refused, ["s1", "s2"]);
        assert_eq!((p.counts.matched, p.counts.refused), (1, 2));
        let d = diff(&p, &s, &t, &FxHashMap::default());
        let logs = decision_logs(&p, &d, "a");
        let ann = logs
            .iter()
            .find(|l| l.object_id.as_deref() == Some("s1"))
            .unwrap();
        assert_eq!(ann.level, Level::Error);
        assert!(
            ann.message.contains("ann@a") && ann.message.contains("uid 10001 → 0: uid 0 is root"),
            "{}",
            ann.message
        );
        let bob = logs
            .iter()
            .find(|l| l.object_id.as_deref() == Some("s2"))
            .unwrap();
        assert!(
            bob.message.contains("gid 50 is below 1000"),
            "{}",
            bob.message
        );
        // With the system range lowered, only root stays refused.
        let mut profile = c.profiles[0].clone();
        profile.min_id = 1;
        let p = build(&profile, "fp", &s, &t);
        assert_eq!((p.counts.matched, p.counts.refused), (2, 1));
    }

    #[test]
    fn create_and_update_plans() {
        let (s, t) = fixture();
        let c = cfg("create");
        let p = build(&c.profiles[0], "fp", &s, &t);
        // Cy (user) and Ops (group) are unmatched; the default mapping copies name and the rule's mail.
        assert_eq!(p.writes.len(), 2, "{:#?}", p.writes);
        let Write::Create { attributes, .. } = &p.writes[0] else {
            panic!()
        };
        assert_eq!(attributes["mail"], ["cy@b"]);
        assert_eq!(attributes["name"], ["Cy"]);
        let c = cfg("update");
        let p2 = build(&c.profiles[0], "fp", &s, &t);
        // Update adds: Ann's name differs, Sales lacks Bob (t2).
        let updates: Vec<&Write> = p2.writes.iter().filter(|w| w.op() == "update").collect();
        assert_eq!(updates.len(), 2, "{updates:#?}");
        let Write::Update { changes, .. } = updates[1] else {
            panic!()
        };
        assert_eq!(changes[0].attribute, "members");
        assert_eq!(changes[0].new, ["t1", "t2"]);
        assert_ne!(p.hash, p2.hash);
        // Same inputs, same hash; another fingerprint, another hash.
        assert_eq!(build(&c.profiles[0], "fp", &s, &t).hash, p2.hash);
        assert_ne!(build(&c.profiles[0], "fp2", &s, &t).hash, p2.hash);
    }

    /// Would catch: a What-If whose counts by kind do not add up to the writes an approval
    /// authorises, a member change counted as a plain update, members added not counted.
    #[test]
    fn writes_are_counted_by_kind_and_class() {
        let (s, t) = fixture();
        let c = cfg("create");
        let p = build(&c.profiles[0], "fp", &s, &t);
        let w = &p.counts.writes_by_kind;
        assert_eq!(w[&ObjectKind::User].creates, 1, "{w:?}");
        assert_eq!(w[&ObjectKind::Group].creates, 1, "{w:?}");
        let c = cfg("update");
        let p = build(&c.profiles[0], "fp", &s, &t);
        let w = &p.counts.writes_by_kind;
        // Ann's name differs (an attribute update); Sales lacks Bob (a member change of one).
        assert_eq!(
            (
                w[&ObjectKind::User].updates,
                w[&ObjectKind::User].member_changes
            ),
            (1, 0),
            "{w:?}"
        );
        assert_eq!(
            (
                w[&ObjectKind::Group].updates,
                w[&ObjectKind::Group].member_changes,
                w[&ObjectKind::Group].members_added
            ),
            (0, 1, 1),
            "{w:?}"
        );
        let sum: u64 = w
            .values()
            .map(|c| c.creates + c.updates + c.member_changes)
            .sum();
        assert_eq!(sum, p.writes.len() as u64);
        assert_eq!(sum, p.counts.creates + p.counts.updates);
    }

    #[test]
    fn diff_writes_only_what_changed() {
        let c = cfg("match-only");
        let (s, t) = fixture();
        let p = build(&c.profiles[0], "fp", &s, &t);
        let d = diff(&p, &s, &t, &FxHashMap::default());
        assert_eq!(d.upserts.len(), 5);
        let stored: FxHashMap<DecisionKey, (u64, Status)> = d
            .upserts
            .iter()
            .map(|(r, _)| ((r.source.kind, r.source.id.clone()), (r.hash, r.status)))
            .collect();
        let d2 = diff(&p, &s, &t, &stored);
        assert!(d2.upserts.is_empty() && d2.removed.is_empty());
        // Bob's target changes its UPN: one row changes; Cy leaves: one row removed.
        let mut t2 = t.clone();
        t2[1].upn = Some("bob@b".into());
        let s2: Vec<DirObject> = s.iter().filter(|o| o.id != "s3").cloned().collect();
        let p2 = build(&c.profiles[0], "fp", &s2, &t2);
        let d3 = diff(&p2, &s2, &t2, &stored);
        assert_eq!(d3.upserts.len(), 1);
        assert_eq!(d3.upserts[0].0.source.id, "s2");
        assert_eq!(d3.removed, vec![(ObjectKind::User, "s3".to_string())]);
        let logs = decision_logs(&p2, &d3, "a");
        assert_eq!(logs.len(), 1);
        assert!(logs[0].message.contains("now matched"), "{logs:?}");
        let h = history_lines(&p2, &d3);
        assert_eq!(h.len(), 2);
        assert!(
            h[0].2
                .starts_with("identity changed; matched to bob@b (t2)"),
            "{h:?}"
        );
        assert_eq!(h[1].1, "s3");
    }
}
