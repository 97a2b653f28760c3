#![allow(clippy::unwrap_used)]
//! Properties of translation over thousands of random descriptors: all ACE kinds (plain, object,
//! conditional with SIDs in its expression, unknown types), any part order, padding.

use ferry_winsec::Sid;
use ferry_winsec::sd::{Ace, AceBody, Acl, Guid, Layout, Part, SecurityDescriptor};
use ferry_winsec::translate::{Mode, SidMap, Translator, translate_bytes, translate_sd};

/// xorshift64*: reproducible without a dependency; FERRY_PROP_SEED picks another sequence.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

fn seed() -> u64 {
    std::env::var("FERRY_PROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f3e7)
}

/// SIDs the descriptors draw from: well-known ones, AD domain ones, Entra ones.
fn pool() -> Vec<Sid> {
    let mut v: Vec<Sid> = ["S-1-1-0", "S-1-5-18", "S-1-5-32-544", "S-1-5-11", "S-1-3-0"]
        .iter()
        .map(|s| Sid::parse(s).unwrap())
        .collect();
    for rid in 1000..1012 {
        v.push(Sid::new(5, &[21, 1225132014, 296224811, 2507946102, rid]).unwrap());
    }
    for i in 0..4 {
        v.push(Sid::new(12, &[1, 2712847316 + i, 2022761974, 317705643, 2423805492]).unwrap());
    }
    v
}

/// A conditional expression: `Member_of {SID(a), SID(b)} && (@User.x == 7)`, padded to 4 bytes.
fn conditional(r: &mut Rng, pool: &[Sid]) -> Vec<u8> {
    let mut sids = Vec::new();
    for _ in 0..1 + r.below(3) {
        let s = pool[r.below(pool.len() as u64) as usize].to_bytes();
        sids.push(0x51);
        sids.extend_from_slice(&(s.len() as u32).to_le_bytes());
        sids.extend_from_slice(&s);
    }
    let mut x = b"artx".to_vec();
    x.push(0x50);
    x.extend_from_slice(&(sids.len() as u32).to_le_bytes());
    x.extend_from_slice(&sids);
    x.push(0x89);
    let name: Vec<u8> = "x".encode_utf16().flat_map(u16::to_le_bytes).collect();
    x.push(0xf9);
    x.extend_from_slice(&(name.len() as u32).to_le_bytes());
    x.extend_from_slice(&name);
    x.push(0x03);
    x.extend_from_slice(&7u64.to_le_bytes());
    x.extend_from_slice(&[0x01, 0x02]);
    x.push(0x80);
    x.push(0xa0);
    while !x.len().is_multiple_of(4) {
        x.push(0);
    }
    x
}

fn ace(r: &mut Rng, pool: &[Sid]) -> Ace {
    let sid = pool[r.below(pool.len() as u64) as usize];
    let flags = [0u8, 0x03, 0x0b, 0x10, 0x13, 0x40][r.below(6) as usize];
    let mask = [0x1f01ff, 0x120089, 0x1200a9, 0x10000000, r.next() as u32][r.below(5) as usize];
    match r.below(10) {
        0..=4 => Ace {
            ace_type: r.below(4) as u8,
            flags,
            body: AceBody::Basic {
                mask,
                sid,
                extra: Vec::new(),
            },
        },
        5 | 6 => {
            let g = |r: &mut Rng| {
                r.chance(60).then(|| {
                    let mut b = [0u8; 16];
                    b.iter_mut().for_each(|x| *x = r.next() as u8);
                    Guid(b)
                })
            };
            let (object_type, inherited_object_type) = (g(r), g(r));
            Ace {
                ace_type: 5 + r.below(4) as u8,
                flags,
                body: AceBody::Object {
                    mask,
                    flags: u32::from(object_type.is_some())
                        | u32::from(inherited_object_type.is_some()) << 1,
                    object_type,
                    inherited_object_type,
                    sid,
                    extra: Vec::new(),
                },
            }
        }
        7 | 8 => Ace {
            ace_type: [0x09, 0x0a, 0x0d][r.below(3) as usize],
            flags,
            body: AceBody::Basic {
                mask,
                sid,
                extra: conditional(r, pool),
            },
        },
        _ => Ace {
            ace_type: 0x04,
            flags,
            body: AceBody::Unknown((0..4 * r.below(6)).map(|_| r.next() as u8).collect()),
        },
    }
}

fn acl(r: &mut Rng, pool: &[Sid]) -> Option<Acl> {
    r.chance(85).then(|| {
        let aces = (0..r.below(9)).map(|_| ace(r, pool)).collect();
        let mut a = Acl::new(aces);
        if r.chance(10) {
            a.trailing = vec![0; 4 * (1 + r.below(3) as usize)];
        }
        a
    })
}

fn descriptor(r: &mut Rng, pool: &[Sid]) -> (SecurityDescriptor, Layout) {
    let pick = |r: &mut Rng| {
        r.chance(80)
            .then(|| pool[r.below(pool.len() as u64) as usize])
    };
    let sd = SecurityDescriptor {
        control: 0x8000 | 0x0004 | 0x0010 | (r.next() as u16 & 0x3f00),
        owner: pick(r),
        group: pick(r),
        dacl: acl(r, pool),
        sacl: acl(r, pool),
        ..SecurityDescriptor::default()
    };
    let mut parts = [Part::Sacl, Part::Dacl, Part::Owner, Part::Group];
    for i in (1..4).rev() {
        parts.swap(i, r.below(i as u64 + 1) as usize);
    }
    (sd, Layout(parts))
}

/// Every SID the bytes name, conditional expressions included, in order.
fn all_sids(sd: &SecurityDescriptor) -> Vec<Sid> {
    let mut v: Vec<Sid> = sd.sids().copied().collect();
    for acl in [&sd.dacl, &sd.sacl].into_iter().flatten() {
        for a in &acl.aces {
            if let AceBody::Basic { extra, .. } = &a.body
                && extra.starts_with(b"artx")
            {
                let mut i = 9;
                while extra[i] == 0x51 {
                    let len = u32::from_le_bytes(extra[i + 1..i + 5].try_into().unwrap()) as usize;
                    v.push(Sid::read(&extra[i + 5..i + 5 + len]).unwrap().0);
                    i += 5 + len;
                }
            }
        }
    }
    v
}

/// Half the pool's domain and Entra SIDs map to SIDs of a new tenant (longer or shorter).
fn tenant_map(r: &mut Rng, pool: &[Sid]) -> SidMap {
    let mut m = SidMap::new();
    for (i, s) in pool.iter().enumerate().skip(5) {
        if r.chance(50) {
            let t = if i % 2 == 0 {
                Sid::new(12, &[1, 9, 9, 9, i as u32]).unwrap()
            } else {
                Sid::new(5, &[21, 7, 7, i as u32]).unwrap()
            };
            m.insert(*s, t).unwrap();
        }
    }
    m
}

const CASES: usize = 4000;

#[test]
fn parse_of_serialize_is_identity_in_any_layout() {
    let (mut r, pool) = (Rng(seed()), pool());
    for _ in 0..CASES {
        let (sd, layout) = descriptor(&mut r, &pool);
        let b = sd.to_bytes_with_layout(layout).unwrap();
        let (back, l2) = SecurityDescriptor::parse_with_layout(&b).unwrap();
        assert_eq!(back, sd);
        assert_eq!(back.to_bytes_with_layout(l2).unwrap(), b);
    }
}

#[test]
fn identity_map_gives_identical_bytes() {
    let (mut r, pool) = (Rng(seed() ^ 1), pool());
    let mut id = SidMap::new();
    for s in &pool {
        id.insert(*s, *s).unwrap();
    }
    for _ in 0..CASES {
        let (sd, layout) = descriptor(&mut r, &pool);
        let b = sd.to_bytes_with_layout(layout).unwrap();
        for mode in [Mode::AddAndRemove, Mode::Add] {
            assert_eq!(translate_bytes(&b, &id, mode).unwrap(), None);
        }
    }
}

#[test]
fn map_then_inverse_gives_the_original_and_sizes_follow_sid_lengths() {
    let (mut r, pool) = (Rng(seed() ^ 2), pool());
    let mut changed = 0;
    for _ in 0..CASES {
        let m = tenant_map(&mut r, &pool);
        let inv = m.inverse().unwrap();
        let (sd, layout) = descriptor(&mut r, &pool);
        let b = sd.to_bytes_with_layout(layout).unwrap();
        let Some(t) = translate_bytes(&b, &m, Mode::AddAndRemove).unwrap() else {
            assert!(all_sids(&sd).iter().all(|s| m.get(s).is_none()));
            continue;
        };
        changed += 1;
        let back = translate_bytes(&t, &inv, Mode::AddAndRemove)
            .unwrap()
            .unwrap();
        assert_eq!(back, b, "map then inverse");

        // The multiset of SIDs maps exactly, in order.
        let after = SecurityDescriptor::parse(&t).unwrap();
        let want: Vec<Sid> = all_sids(&sd)
            .iter()
            .map(|s| *m.get(s).unwrap_or(s))
            .collect();
        assert_eq!(all_sids(&after), want);

        // Size delta = the SIDs' length deltas.
        let delta: isize = all_sids(&sd)
            .iter()
            .map(|s| m.get(s).map_or(0, |t| t.len() as isize - s.len() as isize))
            .sum();
        assert_eq!(t.len() as isize - b.len() as isize, delta);

        // Everything but SIDs is unchanged: control, ACE types, flags, masks, unknown bodies.
        assert_eq!(after.control, sd.control);
        for (x, y) in [(&after.dacl, &sd.dacl), (&after.sacl, &sd.sacl)] {
            let (x, y) = (
                x.as_ref().map(|a| &a.aces[..]).unwrap_or_default(),
                y.as_ref().map(|a| &a.aces[..]).unwrap_or_default(),
            );
            assert_eq!(x.len(), y.len());
            for (a, b) in x.iter().zip(y) {
                assert_eq!(
                    (a.ace_type, a.flags, a.mask()),
                    (b.ace_type, b.flags, b.mask())
                );
                if let AceBody::Unknown(u) = &b.body {
                    assert_eq!(a.body, AceBody::Unknown(u.clone()));
                }
            }
        }
        // Idempotent: targets are not sources, so a second run changes nothing.
        assert_eq!(translate_bytes(&t, &m, Mode::AddAndRemove).unwrap(), None);
    }
    assert!(
        changed > CASES / 2,
        "only {changed} of {CASES} descriptors named a mapped SID"
    );
}

#[test]
fn add_mode_inserts_after_each_source_and_is_idempotent() {
    let (mut r, pool) = (Rng(seed() ^ 3), pool());
    for _ in 0..CASES {
        let m = tenant_map(&mut r, &pool);
        let (sd, _) = descriptor(&mut r, &pool);
        let Some(t) = translate_sd(&sd, &m, Mode::Add) else {
            continue;
        };
        assert_eq!(
            (t.owner, t.group),
            (sd.owner, sd.group),
            "add leaves owner and group"
        );
        for (x, y) in [(&t.dacl, &sd.dacl), (&t.sacl, &sd.sacl)] {
            let (Some(x), Some(y)) = (x, y) else {
                assert_eq!(x.is_some(), y.is_some());
                continue;
            };
            let mut i = 0;
            for a in &y.aces {
                assert_eq!(&x.aces[i], a, "originals stay, in order");
                i += 1;
                let names = all_sids(&SecurityDescriptor {
                    dacl: Some(Acl::new(vec![a.clone()])),
                    ..Default::default()
                })
                .iter()
                .any(|s| m.get(s).is_some());
                if names {
                    let c = &x.aces[i];
                    assert_eq!(
                        (c.ace_type, c.flags, c.mask()),
                        (a.ace_type, a.flags, a.mask())
                    );
                    assert_eq!(c.sid(), a.sid().map(|s| m.get(s).unwrap_or(s)));
                    i += 1;
                }
            }
            assert_eq!(i, x.aces.len());
        }
        assert_eq!(
            translate_sd(&t, &m, Mode::Add),
            None,
            "second add run changes nothing"
        );
    }
}

#[test]
fn the_cache_gives_what_uncached_translation_gives() {
    let (mut r, pool) = (Rng(seed() ^ 4), pool());
    let m = tenant_map(&mut r, &pool);
    let distinct: Vec<Vec<u8>> = (0..200)
        .map(|_| {
            let (sd, l) = descriptor(&mut r, &pool);
            sd.to_bytes_with_layout(l).unwrap()
        })
        .collect();
    for limit in [64, 1 << 20] {
        let mut tr = Translator::new(&m, Mode::AddAndRemove).with_cache_limit(limit);
        for _ in 0..5000 {
            let b = &distinct[r.below(200) as usize];
            let want = translate_bytes(b, &m, Mode::AddAndRemove)
                .unwrap()
                .unwrap_or_else(|| b.clone());
            assert_eq!(tr.translate(b).unwrap(), &want[..]);
        }
        let s = tr.stats();
        assert_eq!(s.translated, 5000);
        assert_eq!(s.cache_hits + s.distinct, 5000);
        if limit > 200 {
            assert!(
                s.distinct <= 200,
                "each distinct descriptor is translated once: {s:?}"
            );
        }
    }
}

#[test]
fn malformed_bytes_never_panic() {
    let (mut r, pool) = (Rng(seed() ^ 5), pool());
    let m = tenant_map(&mut r, &pool);
    for _ in 0..CASES {
        let (sd, l) = descriptor(&mut r, &pool);
        let mut b = sd.to_bytes_with_layout(l).unwrap();
        let i = r.below(b.len() as u64) as usize;
        b[i] = r.next() as u8;
        let cut = r.below(b.len() as u64 + 1) as usize;
        let b = &b[..if r.chance(30) { cut } else { b.len() }];
        if let Ok(x) = SecurityDescriptor::parse(b) {
            assert_eq!(
                SecurityDescriptor::parse(&x.to_bytes().unwrap()).unwrap(),
                x
            );
        }
        let _ = translate_bytes(b, &m, Mode::Add);
    }
}
