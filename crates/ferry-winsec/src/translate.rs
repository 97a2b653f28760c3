//! Translation: a descriptor's owner, group and the SID of every DACL and SACL ACE — inherited
//! ones too, and SIDs inside conditional expressions — mapped through a table, everything else
//! left byte for byte as it was.
//!
//! Two modes, as in the POSIX engine: `add-and-remove` replaces source SIDs by their targets;
//! `add` leaves owner and group alone and inserts, right after each ACE that names a source, the
//! same ACE naming the target. Both are idempotent: a second run changes nothing.

use crate::sd::{Ace, AceBody, Acl, SdError, SecurityDescriptor, ace_type};
use crate::sid::Sid;
use rustc_hash::FxHashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    AddAndRemove,
    Add,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "add-and-remove" => Ok(Mode::AddAndRemove),
            "add" => Ok(Mode::Add),
            m => Err(format!("`{m}` is not a mode (add-and-remove or add)")),
        }
    }
}

/// Source SID → target SID.
#[derive(Clone, Default, Debug)]
pub struct SidMap {
    map: FxHashMap<Sid, Sid>,
}

impl SidMap {
    pub fn new() -> SidMap {
        SidMap::default()
    }

    /// Adds a pair; a source mapped to two different targets is an error.
    pub fn insert(&mut self, from: Sid, to: Sid) -> Result<(), String> {
        match self.map.insert(from, to) {
            Some(prev) if prev != to => Err(format!("{from} is mapped to both {prev} and {to}")),
            _ => Ok(()),
        }
    }

    pub fn get(&self, sid: &Sid) -> Option<&Sid> {
        self.map.get(sid)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Sid, &Sid)> {
        self.map.iter()
    }

    /// Target → source, when no two sources share a target.
    pub fn inverse(&self) -> Option<SidMap> {
        let mut inv = SidMap::new();
        for (s, t) in &self.map {
            inv.insert(*t, *s).ok()?;
        }
        Some(inv)
    }
}

/// Translates a parsed descriptor; `None` when nothing in it is mapped.
pub fn translate_sd(
    sd: &SecurityDescriptor,
    map: &SidMap,
    mode: Mode,
) -> Option<SecurityDescriptor> {
    if !names_source(sd, map) {
        return None;
    }
    let mut out = sd.clone();
    if mode == Mode::AddAndRemove {
        for s in [&mut out.owner, &mut out.group].into_iter().flatten() {
            if let Some(t) = map.get(s) {
                *s = *t;
            }
        }
    }
    for acl in [&mut out.dacl, &mut out.sacl].into_iter().flatten() {
        translate_acl(acl, map, mode);
    }
    (out != *sd).then_some(out)
}

fn names_source(sd: &SecurityDescriptor, map: &SidMap) -> bool {
    sd.owner
        .iter()
        .chain(sd.group.iter())
        .any(|s| map.get(s).is_some())
        || [&sd.dacl, &sd.sacl]
            .into_iter()
            .flatten()
            .any(|a| a.aces.iter().any(|ace| ace_names_source(ace, map)))
}

fn ace_names_source(ace: &Ace, map: &SidMap) -> bool {
    ace.sid().is_some_and(|s| map.get(s).is_some())
        || coda(ace).is_some_and(|x| {
            let mut hit = false;
            walk_conditional(x, &mut |s| hit |= map.get(s).is_some());
            hit
        })
}

fn coda(ace: &Ace) -> Option<&[u8]> {
    match &ace.body {
        AceBody::Basic { extra, .. } | AceBody::Object { extra, .. }
            if ace_type::is_callback(ace.ace_type) && extra.starts_with(b"artx") =>
        {
            Some(extra)
        }
        _ => None,
    }
}

fn mapped_ace(ace: &Ace, map: &SidMap) -> Ace {
    let mut a = ace.clone();
    let conditional = coda(ace).is_some();
    match &mut a.body {
        AceBody::Basic { sid, extra, .. } | AceBody::Object { sid, extra, .. } => {
            if let Some(t) = map.get(sid) {
                *sid = *t;
            }
            if conditional && let Some(x) = map_conditional(extra, map) {
                *extra = x;
            }
        }
        AceBody::Unknown(_) => {}
    }
    a
}

fn translate_acl(acl: &mut Acl, map: &SidMap, mode: Mode) {
    match mode {
        Mode::AddAndRemove => {
            for ace in &mut acl.aces {
                if ace_names_source(ace, map) {
                    *ace = mapped_ace(ace, map);
                }
            }
        }
        Mode::Add => {
            let old = std::mem::take(&mut acl.aces);
            let mut aces = Vec::with_capacity(old.len() + 2);
            for (i, ace) in old.iter().enumerate() {
                aces.push(ace.clone());
                if ace_names_source(ace, map) {
                    let copy = mapped_ace(ace, map);
                    // A SID mapped to itself, or a copy an earlier run added: leave it.
                    if copy != *ace && old.get(i + 1) != Some(&copy) {
                        aces.push(copy);
                    }
                }
            }
            acl.aces = aces;
            if acl.aces.iter().any(|a| ace_type::is_object(a.ace_type)) {
                acl.revision = acl.revision.max(4);
            }
        }
    }
}

/// Conditional-expression tokens (MS-DTYP 2.4.4.17.4) and how long each one's payload is.
enum Token {
    /// Operators and padding.
    Bare,
    /// Integer literal: 8-byte value, sign, base.
    Fixed(usize),
    /// 4-byte little-endian length, then that many bytes.
    Sized,
    Composite,
    Sid,
}

fn token(b: u8) -> Option<Token> {
    Some(match b {
        0x00 | 0x80..=0xa2 => Token::Bare,
        0x01..=0x04 => Token::Fixed(10),
        0x10 | 0x18 | 0xf8..=0xfb => Token::Sized,
        0x50 => Token::Composite,
        0x51 => Token::Sid,
        _ => return None,
    })
}

/// Calls `f` on each SID token; stops quietly at anything it cannot read.
fn walk_conditional(x: &[u8], f: &mut dyn FnMut(&Sid)) {
    fn walk(b: &[u8], f: &mut dyn FnMut(&Sid), depth: usize) -> Option<()> {
        if depth > crate::conditional::MAX_DEPTH {
            return None;
        }
        let mut i = 0;
        while i < b.len() {
            let t = token(b[i])?;
            i += 1;
            match t {
                Token::Bare => {}
                Token::Fixed(n) => i += n,
                Token::Sized | Token::Composite | Token::Sid => {
                    let len = u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?) as usize;
                    let payload = b.get(i + 4..i + 4 + len)?;
                    match t {
                        Token::Composite => walk(payload, f, depth + 1)?,
                        Token::Sid => f(&Sid::read(payload).ok()?.0),
                        _ => {}
                    }
                    i += 4 + len;
                }
            }
        }
        Some(())
    }
    let _ = walk(x.get(4..).unwrap_or_default(), f, 0);
}

/// The conditional expression with its SID tokens mapped; `None` when it cannot be read whole
/// (then it is carried unchanged) or nothing in it changes.
fn map_conditional(x: &[u8], map: &SidMap) -> Option<Vec<u8>> {
    fn emit(b: &[u8], map: &SidMap, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        if depth > crate::conditional::MAX_DEPTH {
            return None;
        }
        let mut i = 0;
        while i < b.len() {
            let code = b[i];
            let t = token(code)?;
            i += 1;
            out.push(code);
            match t {
                Token::Bare => {}
                Token::Fixed(n) => {
                    out.extend_from_slice(b.get(i..i + n)?);
                    i += n;
                }
                Token::Sized | Token::Composite | Token::Sid => {
                    let len = u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?) as usize;
                    let payload = b.get(i + 4..i + 4 + len)?;
                    let at = out.len();
                    out.extend_from_slice(&[0; 4]);
                    match t {
                        Token::Composite => emit(payload, map, out, depth + 1)?,
                        Token::Sid => {
                            let (sid, n) = Sid::read(payload).ok()?;
                            if n != payload.len() {
                                return None;
                            }
                            map.get(&sid).unwrap_or(&sid).write(out);
                        }
                        _ => out.extend_from_slice(payload),
                    }
                    let written = (out.len() - at - 4) as u32;
                    out[at..at + 4].copy_from_slice(&written.to_le_bytes());
                    i += 4 + len;
                }
            }
        }
        Some(())
    }
    let mut out = Vec::with_capacity(x.len() + 16);
    out.extend_from_slice(x.get(..4)?);
    emit(&x[4..], map, &mut out, 0)?;
    (out != x).then_some(out)
}

/// Translates a binary descriptor: `Ok(None)` when nothing in it is mapped (the input stands),
/// otherwise the new bytes, its parts in the input's order.
pub fn translate_bytes(b: &[u8], map: &SidMap, mode: Mode) -> Result<Option<Vec<u8>>, SdError> {
    let (sd, layout) = SecurityDescriptor::parse_with_layout(b)?;
    match translate_sd(&sd, map, mode) {
        None => Ok(None),
        Some(t) => t.to_bytes_with_layout(layout).map(Some),
    }
}

/// Counters of a [`Translator`].
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Stats {
    pub translated: u64,
    pub cache_hits: u64,
    /// Distinct descriptors translated (cache misses).
    pub distinct: u64,
    pub changed: u64,
}

/// Translation with a cache keyed by the descriptor's bytes: a file system shares a few
/// descriptors among many files (NTFS stores each distinct one once), so each is translated once.
pub struct Translator<'m> {
    map: &'m SidMap,
    mode: Mode,
    cache: FxHashMap<Box<[u8]>, Option<Box<[u8]>>>,
    limit: usize,
    stats: Stats,
}

impl<'m> Translator<'m> {
    pub fn new(map: &'m SidMap, mode: Mode) -> Translator<'m> {
        Translator {
            map,
            mode,
            cache: FxHashMap::default(),
            limit: 1 << 20,
            stats: Stats::default(),
        }
    }

    /// At most `n` distinct descriptors are remembered (the cache starts over when full).
    pub fn with_cache_limit(mut self, n: usize) -> Self {
        self.limit = n.max(1);
        self
    }

    /// The translated bytes, or `sd` itself when nothing in it is mapped.
    pub fn translate<'a>(&'a mut self, sd: &'a [u8]) -> Result<&'a [u8], SdError> {
        self.stats.translated += 1;
        if !self.cache.contains_key(sd) {
            let out = translate_bytes(sd, self.map, self.mode)?.map(Vec::into_boxed_slice);
            if self.cache.len() >= self.limit {
                self.cache.clear();
            }
            self.stats.distinct += 1;
            self.cache.insert(sd.into(), out);
        } else {
            self.stats.cache_hits += 1;
        }
        match self.cache.get(sd) {
            Some(Some(t)) => {
                self.stats.changed += 1;
                Ok(t)
            }
            _ => Ok(sd),
        }
    }

    /// Translates uncached (to measure what the cache saves).
    pub fn translate_uncached(&mut self, sd: &[u8]) -> Result<Option<Vec<u8>>, SdError> {
        self.stats.translated += 1;
        translate_bytes(sd, self.map, self.mode)
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }
}
