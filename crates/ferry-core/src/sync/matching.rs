//! The match stage: source objects against target objects through ordered rules.
//!
//! For each rule and kind, the target values (after the rule's target transforms, and lower-cased
//! unless the rule is case-sensitive) are indexed once; each source value is transformed and looked
//! up. The first rule that yields exactly one candidate decides a match. A rule that yields several
//! candidates is remembered; if no later rule yields exactly one, the object is *ambiguous* under the
//! first such rule. No candidate under any rule is *unmatched*. Finally, when several sources match
//! the same target, none of them is matched: each becomes a *conflict*, reported with the others.
//!
//! Decisions refer to objects by index into the slices given, so the stage allocates almost nothing
//! per object; the index borrows target strings where no transform changes them.

use crate::config::MatchRule;
use crate::model::{AttrRef, AttrValue, DirObject, ObjectKind};
use crate::transform::{apply_all, lowercase};
use rustc_hash::FxHashMap;
use std::borrow::Cow;

/// What the match stage decided for one source object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Matched {
        target: u32,
        rule: u16,
    },
    Unmatched,
    /// `rule` yielded several `candidates` and no rule yielded exactly one.
    Ambiguous {
        rule: u16,
        candidates: Vec<u32>,
    },
    /// Matched `target` by `rule`, but so did the `others` sources.
    Conflict {
        target: u32,
        rule: u16,
        others: Vec<u32>,
    },
    /// Matched `target` by `rule`, but the translation would name a privileged principal
    /// ([`crate::privileged::refusal`]): not in the translation table.
    Refused {
        target: u32,
        rule: u16,
    },
    /// An operator excluded it from the profile (`rule` describes the override): neither in the
    /// table nor warned about.
    Excluded {
        rule: u16,
    },
    /// An operator pinned it, but the pin cannot hold (`rule` describes the pin and why): an error
    /// decision, not in the table.
    Broken {
        rule: u16,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub source: u32,
    pub outcome: Outcome,
}

enum Cands {
    One(u32),
    Many(Vec<u32>),
}

impl Cands {
    fn push(&mut self, t: u32) {
        match self {
            Cands::One(x) if *x == t => {}
            Cands::One(x) => *self = Cands::Many(vec![*x, t]),
            Cands::Many(v) => {
                if !v.contains(&t) {
                    v.push(t)
                }
            }
        }
    }
    fn as_slice(&self) -> &[u32] {
        match self {
            Cands::One(x) => std::slice::from_ref(x),
            Cands::Many(v) => v,
        }
    }
}

struct CompiledRule<'r, 't> {
    rule: &'r MatchRule,
    /// Position in the profile's rule list, which decisions report.
    orig: u16,
    source: AttrRef,
    index: FxHashMap<Cow<'t, str>, Cands>,
}

fn key<'a>(
    rule: &MatchRule,
    chain: &[crate::transform::Transform],
    v: AttrValue<'a>,
) -> Option<Cow<'a, str>> {
    let s = match v {
        AttrValue::Str(s) => apply_all(chain, s),
        AttrValue::Num(n) => {
            let s = n.to_string();
            Cow::Owned(apply_all(chain, &s).into_owned())
        }
    };
    let s = if rule.case_sensitive { s } else { lowercase(s) };
    if s.is_empty() { None } else { Some(s) }
}

/// Runs the match stage for one kind. `sources` and `targets` hold objects of any kind; only those of
/// `kind` take part. Returns one decision per source of that kind, in source order.
pub fn match_kind<'r, 't>(
    kind: ObjectKind,
    rules: &'r [MatchRule],
    sources: &[DirObject],
    targets: &'t [DirObject],
) -> Vec<Decision> {
    let n_targets = targets.iter().filter(|t| t.kind == kind).count();
    let build = |orig: usize, rule: &'r MatchRule| -> CompiledRule<'r, 't> {
        let tattr = AttrRef::parse(&rule.target_attribute);
        let mut index: FxHashMap<Cow<'t, str>, Cands> =
            FxHashMap::with_capacity_and_hasher(n_targets, Default::default());
        for (ti, t) in targets.iter().enumerate() {
            if t.kind != kind {
                continue;
            }
            t.for_each_value(&tattr, |v| {
                if let Some(k) = key(rule, &rule.target_transforms, v) {
                    index
                        .entry(k)
                        .and_modify(|c| c.push(ti as u32))
                        .or_insert(Cands::One(ti as u32));
                }
            });
        }
        CompiledRule {
            rule,
            orig: orig as u16,
            source: AttrRef::parse(&rule.source_attribute),
            index,
        }
    };
    let applicable: Vec<(usize, &'r MatchRule)> = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.applies_to(kind))
        .collect();
    // Each rule's index is independent: build them side by side when they are large.
    let compiled: Vec<CompiledRule<'r, 't>> = if applicable.len() > 1 && n_targets >= 50_000 {
        std::thread::scope(|sc| {
            let handles: Vec<_> = applicable
                .iter()
                .map(|&(o, r)| sc.spawn(move || build(o, r)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    } else {
        applicable.iter().map(|&(o, r)| build(o, r)).collect()
    };
    let idx: Vec<u32> = (0..sources.len() as u32)
        .filter(|&i| sources[i as usize].kind == kind)
        .collect();

    let decide = |chunk: &[u32]| -> Vec<Decision> {
        let mut out = Vec::with_capacity(chunk.len());
        let mut scratch: Vec<u32> = Vec::new();
        for &si in chunk {
            let s = &sources[si as usize];
            let mut ambiguous: Option<(u16, Vec<u32>)> = None;
            let mut outcome = Outcome::Unmatched;
            for c in &compiled {
                scratch.clear();
                s.for_each_value(&c.source, |v| {
                    if let Some(k) = key(c.rule, &c.rule.transforms, v)
                        && let Some(cands) = c.index.get(k.as_ref())
                    {
                        for &t in cands.as_slice() {
                            if !scratch.contains(&t) {
                                scratch.push(t);
                            }
                        }
                    }
                });
                match scratch.len() {
                    0 => {}
                    1 => {
                        outcome = Outcome::Matched {
                            target: scratch[0],
                            rule: c.orig,
                        };
                        break;
                    }
                    _ => {
                        if ambiguous.is_none() {
                            let mut cands = scratch.clone();
                            cands.sort_unstable();
                            ambiguous = Some((c.orig, cands));
                        }
                    }
                }
            }
            if outcome == Outcome::Unmatched
                && let Some((rule, candidates)) = ambiguous
            {
                outcome = Outcome::Ambiguous { rule, candidates };
            }
            out.push(Decision {
                source: si,
                outcome,
            });
        }
        out
    };

    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let mut decisions = if threads > 1 && idx.len() >= 50_000 {
        let per = idx.len().div_ceil(threads);
        std::thread::scope(|sc| {
            let handles: Vec<_> = idx
                .chunks(per)
                .map(|ch| sc.spawn(move || decide(ch)))
                .collect();
            let mut all = Vec::with_capacity(idx.len());
            for h in handles {
                match h.join() {
                    Ok(part) => all.extend(part),
                    Err(p) => std::panic::resume_unwind(p),
                }
            }
            all
        })
    } else {
        decide(&idx)
    };

    // Several sources claiming one target: none of them may be matched to it. `claimed[t]` is the
    // first claimant + 1, or u32::MAX once a second one appears.
    let mut claimed = vec![0u32; targets.len()];
    let mut contested = false;
    for d in &decisions {
        if let Outcome::Matched { target, .. } = d.outcome {
            let c = &mut claimed[target as usize];
            if *c == 0 {
                *c = d.source + 1;
            } else {
                *c = u32::MAX;
                contested = true;
            }
        }
    }
    if contested {
        let mut claims: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
        for d in &decisions {
            if let Outcome::Matched { target, .. } = d.outcome
                && claimed[target as usize] == u32::MAX
            {
                claims.entry(target).or_default().push(d.source);
            }
        }
        for d in &mut decisions {
            if let Outcome::Matched { target, rule } = d.outcome
                && let Some(all) = claims.get(&target)
            {
                let others = all.iter().copied().filter(|&s| s != d.source).collect();
                d.outcome = Outcome::Conflict {
                    target,
                    rule,
                    others,
                };
            }
        }
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::Transform;

    fn user(id: &str, mail: Option<&str>, upn: Option<&str>) -> DirObject {
        let mut o = DirObject::new(ObjectKind::User, id, id);
        o.mail = mail.map(Into::into);
        o.upn = upn.map(Into::into);
        o
    }

    fn rule(s: &str, t: &str, transforms: Vec<Transform>) -> MatchRule {
        MatchRule {
            source_attribute: s.into(),
            target_attribute: t.into(),
            transforms,
            target_transforms: vec![],
            object_types: None,
            case_sensitive: false,
        }
    }

    #[test]
    fn decisions_table() {
        let suffix = Transform::ReplaceSuffix("@contoso.test".into(), "@fabrikam.test".into());
        let rules = vec![
            rule("mail", "mail", vec![suffix.clone()]),
            rule("upn", "upn", vec![suffix]),
        ];
        let sources = vec![
            user("s0", Some("Ann@Contoso.test"), None), // case differs: matches t0
            user("s1", Some("bob@contoso.test"), None), // two targets share bob's mail → ambiguous
            user("s2", Some("gone@contoso.test"), None), // left: unmatched
            user("s3", Some("dup@contoso.test"), Some("carl@contoso.test")), // rule 0 ambiguous, rule 1 unique → matched
            user("s4", Some("eve@contoso.test"), None), // s4 and s5 both claim t5 → conflict
            user("s5", Some("EVE@contoso.test"), None),
            user("s6", None, None), // nothing to compare: unmatched
        ];
        let targets = vec![
            user("t0", Some("ann@fabrikam.test"), None),
            user("t1", Some("bob@fabrikam.test"), None),
            user("t2", Some("BOB@fabrikam.test"), None),
            user("t3", Some("dup@fabrikam.test"), Some("carl@fabrikam.test")),
            user("t4", Some("dup@fabrikam.test"), None),
            user("t5", Some("eve@fabrikam.test"), None),
        ];
        let d = match_kind(ObjectKind::User, &rules, &sources, &targets);
        let o: Vec<Outcome> = d.into_iter().map(|d| d.outcome).collect();
        assert_eq!(
            o,
            vec![
                Outcome::Matched { target: 0, rule: 0 },
                Outcome::Ambiguous {
                    rule: 0,
                    candidates: vec![1, 2]
                },
                Outcome::Unmatched,
                Outcome::Matched { target: 3, rule: 1 },
                Outcome::Conflict {
                    target: 5,
                    rule: 0,
                    others: vec![5]
                },
                Outcome::Conflict {
                    target: 5,
                    rule: 0,
                    others: vec![4]
                },
                Outcome::Unmatched,
            ]
        );
    }

    #[test]
    fn case_sensitive_rules_and_kinds() {
        let mut r = rule("name", "name", vec![]);
        r.case_sensitive = true;
        let sources = vec![
            DirObject::new(ObjectKind::Group, "g", "Sales"),
            DirObject::new(ObjectKind::Group, "h", "sales"),
        ];
        let targets = vec![
            DirObject::new(ObjectKind::Group, "x", "sales"),
            DirObject::new(ObjectKind::User, "y", "Sales"),
        ];
        let d = match_kind(ObjectKind::Group, &[r], &sources, &targets);
        assert_eq!(d[0].outcome, Outcome::Unmatched);
        assert_eq!(d[1].outcome, Outcome::Matched { target: 0, rule: 0 });
    }

    #[test]
    fn multi_valued_and_numeric_attributes() {
        let mut s = DirObject::new(ObjectKind::User, "s", "s");
        s.attrs = vec![
            ("proxyAddresses".into(), "smtp:a@x".into()),
            ("proxyAddresses".into(), "smtp:b@x".into()),
        ];
        s.uid_number = Some(1001);
        let mut t = DirObject::new(ObjectKind::User, "t", "t");
        t.attrs = vec![("proxyAddresses".into(), "SMTP:B@X".into())];
        t.attrs.push(("employeeNumber".into(), "1001".into()));
        let d = match_kind(
            ObjectKind::User,
            &[rule("proxyAddresses", "proxyAddresses", vec![])],
            &[s.clone()],
            &[t.clone()],
        );
        assert_eq!(d[0].outcome, Outcome::Matched { target: 0, rule: 0 });
        let d = match_kind(
            ObjectKind::User,
            &[rule("uid_number", "employeeNumber", vec![])],
            &[s],
            &[t],
        );
        assert_eq!(d[0].outcome, Outcome::Matched { target: 0, rule: 0 });
    }

    #[test]
    fn parallel_path_agrees_with_serial() {
        let n = 60_000;
        let sources: Vec<DirObject> = (0..n)
            .map(|i| user(&format!("s{i}"), Some(&format!("U{i}@a")), None))
            .collect();
        let targets: Vec<DirObject> = (0..n)
            .filter(|i| i % 7 != 0)
            .map(|i| user(&format!("t{i}"), Some(&format!("u{i}@a")), None))
            .collect();
        let d = match_kind(
            ObjectKind::User,
            &[rule("mail", "mail", vec![])],
            &sources,
            &targets,
        );
        assert_eq!(d.len(), n);
        for (i, dec) in d.iter().enumerate() {
            assert_eq!(dec.source as usize, i);
            match dec.outcome {
                Outcome::Matched { target, .. } => {
                    assert_eq!(targets[target as usize].id, format!("t{i}"))
                }
                Outcome::Unmatched => assert_eq!(i % 7, 0),
                ref o => panic!("{o:?}"),
            }
        }
    }
}
