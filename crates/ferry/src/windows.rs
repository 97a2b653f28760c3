//! `ferry sddl translate` and `ferry icacls translate`: Windows ACLs translated on any machine.
//!
//! Output SDDL never uses domain-relative aliases (`DA`, `DU`, `LA`, …): on the device where it
//! is restored the machine may already belong to the target domain, and `DU` would then name the
//! target's Domain Users. SIDs are written in full instead; well-known aliases (`SY`, `BA`, …)
//! mean the same everywhere and stay.

use anyhow::{Context, Result};
use ferry_agent::repermission::glob_match;
use ferry_core::principal_map::{Principal, PrincipalMap};
use ferry_winsec::icacls::SaveFile;
use ferry_winsec::translate::{Mode, SidMap, translate_sd};
use ferry_winsec::{Sid, sddl};
use rustc_hash::FxHashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct MapArgs {
    /// CSV `source,target` of SIDs (uid:/gid: rows are skipped), or ferry's csv translation export.
    #[arg(long)]
    map: PathBuf,
    /// add-and-remove (source SIDs replaced) or add (the target gets the same ACE, after it).
    #[arg(long, default_value = "add-and-remove")]
    mode: String,
    /// The domain SID that SDDL's domain-relative aliases (DA, DU, LA, …) stand for.
    #[arg(long)]
    domain_sid: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum SddlCmd {
    /// Read SDDL lines on stdin, write the translated lines to stdout. Nothing is written unless
    /// every line parses; errors name the line.
    Translate(MapArgs),
}

#[derive(clap::Subcommand)]
pub enum IcaclsCmd {
    /// Translate an `icacls PATH /save FILE /T` file into OUT, for `icacls PARENT /restore OUT`.
    Translate {
        #[command(flatten)]
        map: MapArgs,
        /// Leave objects whose saved path matches this glob (and everything below) as they are;
        /// `\` or `/`, case-insensitive, e.g. `**\AppData\Local\Temp` (repeatable).
        #[arg(long)]
        ignore: Vec<String>,
        input: PathBuf,
        output: PathBuf,
    },
}

struct Loaded {
    map: SidMap,
    mode: Mode,
    domain: Option<Sid>,
}

fn load(a: &MapArgs) -> Result<Loaded> {
    let text = std::fs::read_to_string(&a.map)
        .with_context(|| format!("cannot read {}", a.map.display()))?;
    let map = sid_map(&text).map_err(|e| anyhow::anyhow!("{}: {e}", a.map.display()))?;
    let mode = a.mode.parse().map_err(|e| anyhow::anyhow!("--mode: {e}"))?;
    let domain = a
        .domain_sid
        .as_deref()
        .map(|d| Sid::parse(d).map_err(|e| anyhow::anyhow!("--domain-sid: {e}")))
        .transpose()?;
    Ok(Loaded { map, mode, domain })
}

/// The SID pairs of a map file, read as every map reader reads it ([`PrincipalMap::read`]: the
/// `source,target` CSV or any of ferry's translation exports); `uid:`/`gid:` pairs are POSIX's
/// and left out here.
fn sid_map(text: &str) -> Result<SidMap, String> {
    let pm = PrincipalMap::read(text)?;
    let mut m = SidMap::new();
    for p in pm.pairs() {
        if let (Principal::Sid(s), Principal::Sid(t)) = (&p.source, &p.target) {
            let sid = |v: &str| Sid::parse(v).map_err(|e| format!("{}: {e}", p.at));
            m.insert(sid(s)?, sid(t)?)
                .map_err(|e| format!("{}: {e}", p.at))?;
        }
    }
    Ok(m)
}

/// Translates SDDL text, remembering each distinct input: a tree shares a few descriptors.
struct Cache<'a> {
    l: &'a Loaded,
    seen: FxHashMap<String, (String, bool)>,
    changed: usize,
}

impl Cache<'_> {
    fn translate(&mut self, text: &str) -> Result<&str, String> {
        if !self.seen.contains_key(text) {
            let sd = sddl::parse(text, self.l.domain.as_ref()).map_err(|e| e.to_string())?;
            let (out, changed) = match translate_sd(&sd, &self.l.map, self.l.mode) {
                Some(t) => (t, true),
                None => (sd, false),
            };
            let s = sddl::to_sddl(&out, None).map_err(|e| e.to_string())?;
            self.seen.insert(text.to_string(), (s, changed));
        }
        let (s, changed) = &self.seen[text];
        self.changed += usize::from(*changed);
        Ok(s)
    }
}

const MAX_REPORTED: usize = 20;

pub fn sddl(cmd: SddlCmd, json: bool) -> Result<ExitCode> {
    let SddlCmd::Translate(a) = cmd;
    let l = load(&a)?;
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("stdin is not UTF-8 text")?;
    let mut cache = Cache {
        l: &l,
        seen: FxHashMap::default(),
        changed: 0,
    };
    let mut out = String::with_capacity(input.len() + input.len() / 8);
    let mut errors = Vec::new();
    let mut lines = 0;
    for (i, line) in input.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            out.push('\n');
            continue;
        }
        lines += 1;
        match cache.translate(line) {
            Ok(s) => out.push_str(s),
            Err(e) => errors.push(format!("line {}: {e}", i + 1)),
        }
        out.push('\n');
    }
    if !errors.is_empty() {
        return refuse("stdin", &errors);
    }
    std::io::stdout().lock().write_all(out.as_bytes())?;
    summary(json, lines, cache.changed, cache.seen.len());
    Ok(ExitCode::SUCCESS)
}

fn refuse(what: &str, errors: &[String]) -> Result<ExitCode> {
    for e in errors.iter().take(MAX_REPORTED) {
        eprintln!("{what}: {e}");
    }
    if errors.len() > MAX_REPORTED {
        eprintln!("{what}: … and {} more", errors.len() - MAX_REPORTED);
    }
    eprintln!(
        "nothing was written: {} line(s) could not be translated",
        errors.len()
    );
    Ok(ExitCode::from(1))
}

fn summary(json: bool, lines: usize, changed: usize, distinct: usize) {
    if json {
        eprintln!(
            "{}",
            serde_json::json!({"descriptors": lines, "changed": changed, "distinct": distinct})
        );
    } else {
        eprintln!("{lines} descriptors, {changed} changed, {distinct} distinct translated");
    }
}

pub fn icacls(cmd: IcaclsCmd, json: bool) -> Result<ExitCode> {
    let IcaclsCmd::Translate {
        map,
        ignore,
        input,
        output,
    } = cmd;
    let norm = |s: &str| s.replace('\\', "/").to_lowercase().into_bytes();
    let ignore: Vec<(Vec<u8>, Vec<u8>)> = ignore
        .iter()
        .map(|g| {
            let g = norm(g.trim_end_matches(['\\', '/']));
            let mut below = g.clone();
            below.extend_from_slice(b"/**");
            (g, below)
        })
        .collect();
    let ignored = |path: &str| {
        let p = norm(path);
        ignore
            .iter()
            .any(|(g, below)| glob_match(g, &p) || glob_match(below, &p))
    };
    let l = load(&map)?;
    let bytes =
        std::fs::read(&input).with_context(|| format!("cannot read {}", input.display()))?;
    let mut file =
        SaveFile::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
    let mut cache = Cache {
        l: &l,
        seen: FxHashMap::default(),
        changed: 0,
    };
    let mut errors = Vec::new();
    let mut skipped = 0;
    for e in &mut file.entries {
        if ignored(&e.path) {
            skipped += 1;
            continue;
        }
        match cache.translate(&e.sddl) {
            Ok(s) => e.sddl = s.to_string(),
            Err(err) => errors.push(format!("line {} ({}): {err}", e.line + 1, e.path)),
        }
    }
    if !errors.is_empty() {
        return refuse(&input.display().to_string(), &errors);
    }
    // Beside the destination, then renamed: a killed run leaves the old file or the new one.
    ferry_agent::state::atomic_write(&output, &file.to_bytes(), 0o644)
        .map_err(anyhow::Error::msg)?;
    summary(
        json,
        file.entries.len() - skipped,
        cache.changed,
        cache.seen.len(),
    );
    if skipped > 0 {
        eprintln!("{skipped} left as they were (--ignore)");
    }
    Ok(ExitCode::SUCCESS)
}
