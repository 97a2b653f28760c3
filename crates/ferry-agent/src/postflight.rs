//! Post-flight: after a run's last step, or its rollback, the agent proves the result and keeps
//! the evidence (`runs/RUN.verification.json`, sent to the server with the next check-in).
//!
//! - `principals`: after a run, the run's own map run again as a what-if over the same paths
//!   (the engine's walker, ignore globs and ACL reading) would change nothing: in
//!   `add-and-remove` no source principal remains in owners, groups or ACL entries; in `add`
//!   every target principal is there. Counts and the first offending paths otherwise. After a
//!   rollback: every file of the run's journal has the owner, group, mode and ACLs it had before.
//! - `homes`: every translated target account resolves (passwd, NSS) to a home that exists and
//!   that it owns (in `add-and-remove`; in the other modes its source account may still own it,
//!   no one else may).
//! - `check-commands`: each runbook's `completion.check_commands` exits 0.

use crate::harvest;
use crate::repermission::{self, Mode};
use crate::run::{self, Env, Outcome, RunState};
use ferry_core::agent::{PreflightCheck, Verification};
use ferry_core::runbook::PermissionMode;
use std::path::PathBuf;

/// How many offending paths the evidence names.
const FIRST: usize = 10;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Proves a run's result.
pub fn after_run(env: &Env, r: &RunState) -> Verification {
    let mut checks = vec![principals(env, r)];
    checks.push(homes(env, r));
    checks.push(check_commands(env, r));
    ferry_core::agent::bound_checks(&mut checks, ferry_core::agent::VERIFICATION_DETAIL_MAX);
    Verification {
        run: r.run.clone(),
        after: "run".into(),
        at: now_ms(),
        checks,
    }
}

fn principals(env: &Env, r: &RunState) -> PreflightCheck {
    let map = match r.map(env.min_id) {
        Ok(m) => m,
        Err(e) => return PreflightCheck::new("principals", false, true, e),
    };
    let (mut scanned, mut left, mut first) = (0u64, 0u64, Vec::new());
    let mut checked = 0;
    for rb in &r.order.runbooks {
        let p = &rb.permission_updates;
        if p.mode == PermissionMode::None || (map.uids.is_empty() && map.gids.is_empty()) {
            continue;
        }
        let paths = run::permission_paths(r, rb);
        if paths.is_empty() {
            continue;
        }
        checked += 1;
        let opts = repermission::Options {
            mode: match p.mode {
                PermissionMode::Add => Mode::Add,
                _ => Mode::AddAndRemove,
            },
            what_if: true,
            excludes: Vec::new(),
            ignore: p.ignore.clone(),
            threads: env.threads,
            cross_devices: false,
        };
        match repermission::run(&paths, &map, &opts, None) {
            Ok(s) => {
                scanned += s.scanned;
                left += s.changed;
                for c in s.changes.iter().take(FIRST.saturating_sub(first.len())) {
                    let mut what = Vec::new();
                    if let Some((from, _)) = c.uid {
                        what.push(format!("owner {from}"));
                    }
                    if let Some((from, _)) = c.gid {
                        what.push(format!("group {from}"));
                    }
                    if c.acl_access || c.acl_default {
                        what.push("ACL entries".into());
                    }
                    first.push(format!(
                        "{} ({})",
                        repermission::show(&c.path),
                        what.join(", ")
                    ));
                }
            }
            Err(e) => {
                return PreflightCheck::new(
                    "principals",
                    false,
                    true,
                    format!("the paths could not be checked: {e}"),
                );
            }
        }
    }
    if checked == 0 {
        return PreflightCheck::new("principals", true, true, "no permission updates to prove");
    }
    if left == 0 {
        PreflightCheck::new(
            "principals",
            true,
            true,
            format!(
                "{scanned} entries checked: none names a source principal the run should have replaced"
            ),
        )
    } else {
        PreflightCheck::new(
            "principals",
            false,
            true,
            format!(
                "{left} of {scanned} entries still name a source principal (or lack their target's): {}{}",
                first.join("; "),
                if left as usize > first.len() {
                    "; …"
                } else {
                    ""
                }
            ),
        )
    }
}

fn homes(env: &Env, r: &RunState) -> PreflightCheck {
    use std::os::unix::fs::MetadataExt;
    let local = harvest::read_passwd(&env.sources.passwd).unwrap_or_default();
    let replaced = r
        .order
        .runbooks
        .iter()
        .any(|rb| rb.permission_updates.mode == PermissionMode::AddAndRemove);
    let (mut ok, mut bad) = (0, Vec::new());
    for t in &r.order.translation {
        let Some(tuid) = t.target_uid else { continue };
        match harvest::account_by_uid(&env.sources, &local, tuid) {
            Some(a) => match std::fs::metadata(&a.home) {
                Ok(m) if m.is_dir() => {
                    let owner = m.uid();
                    if owner == tuid || (!replaced && Some(owner) == t.source_uid) {
                        ok += 1;
                    } else {
                        bad.push(format!(
                            "{} (uid {tuid}): its home {} is owned by uid {owner}{}",
                            a.name,
                            a.home.display(),
                            if Some(owner) == t.source_uid {
                                ", its source account (add-and-remove should have replaced it)"
                            } else {
                                ", neither it nor its source account"
                            }
                        ));
                    }
                }
                _ => bad.push(format!(
                    "{} (uid {tuid}): its home {} does not exist",
                    a.name,
                    a.home.display()
                )),
            },
            None => bad.push(format!(
                "{} (uid {tuid}) does not resolve on this device",
                t.target_name
            )),
        }
    }
    if bad.is_empty() {
        PreflightCheck::new(
            "homes",
            true,
            true,
            format!("{ok} target account(s) resolve to a home they own"),
        )
    } else {
        PreflightCheck::new("homes", false, true, bad.join("; "))
    }
}

fn check_commands(env: &Env, r: &RunState) -> PreflightCheck {
    let (mut ran, mut failed) = (0, Vec::new());
    for rb in &r.order.runbooks {
        for (i, s) in rb.completion.check_commands.iter().enumerate() {
            ran += 1;
            let id = format!("{}/check-{}", rb.name, i + 1);
            if let Outcome::Fail(m) = run::script(env, r, &id, s) {
                failed.push(format!("`{}`: {m}", s.name));
            }
        }
    }
    if failed.is_empty() {
        PreflightCheck::new(
            "check-commands",
            true,
            true,
            format!("{ran} check command(s) succeeded"),
        )
    } else {
        PreflightCheck::new("check-commands", false, true, failed.join("; "))
    }
}

/// Proves a rollback: every journaled file as the run found it; `undo` is what the rollback
/// said (an error: it did not complete).
pub fn after_rollback(env: &Env, r: &RunState, undo: &Result<String, String>) -> Verification {
    let journal = env.state.run_file(&r.run, "journal");
    let check = match undo {
        Err(e) => PreflightCheck::new(
            "principals",
            false,
            true,
            format!("the rollback did not complete: {e}"),
        ),
        Ok(_) if !journal.exists() => {
            PreflightCheck::new("principals", true, true, "the run changed no permissions")
        }
        Ok(_) => match repermission::undone_mismatches(&journal) {
            Ok((n, bad)) if bad.is_empty() => PreflightCheck::new(
                "principals",
                true,
                true,
                format!("{n} journaled file(s) are as the run found them"),
            ),
            Ok((n, bad)) => PreflightCheck::new(
                "principals",
                false,
                true,
                format!(
                    "{} of {n} journaled file(s) are not as the run found them: {}",
                    bad.len(),
                    bad.iter()
                        .take(FIRST)
                        .map(|(p, w)| format!("{} ({w})", repermission::show(p)))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ),
            Err(e) => PreflightCheck::new("principals", false, true, e),
        },
    };
    let links: Vec<PathBuf> = r
        .home_links
        .iter()
        .filter(|(l, to)| std::fs::read_link(l).ok().as_deref() == Some(to.as_path()))
        .map(|(l, _)| l.clone())
        .collect();
    let homes = if links.is_empty() {
        PreflightCheck::new("homes", true, true, "no home link of the run remains")
    } else {
        PreflightCheck::new(
            "homes",
            false,
            true,
            format!(
                "home links of the run remain: {}",
                links
                    .iter()
                    .map(|l| l.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    };
    Verification {
        run: r.run.clone(),
        after: "rollback".into(),
        at: now_ms(),
        checks: {
            let mut c = vec![check, homes];
            ferry_core::agent::bound_checks(&mut c, ferry_core::agent::VERIFICATION_DETAIL_MAX);
            c
        },
    }
}

/// Keeps a post-flight as the run's evidence until the server has it.
pub fn save(env: &Env, v: &Verification) -> Result<(), String> {
    env.state.write(
        &format!("runs/{}.verification.json", crate::state::safe_name(&v.run)),
        v,
        0o600,
    )?;
    env.state.write("verification.json", &Some(v), 0o600)
}
