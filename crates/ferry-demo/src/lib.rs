//! Sample source and target tenants for `ferry quickstart` and the benchmarks.
//!
//! Contoso (source) moves to Fabrikam (target); both are Entra-style tenants whose users also carry
//! POSIX ids. The pair is deterministic for a seed and holds what a migration engineer meets: renamed
//! domains (`@contoso.test` → `@fabrikam.test`), case differences, people who changed their mail
//! (matched by `employeeId` instead), people who left (unmatched), duplicated target mailboxes
//! (ambiguous), new hires only in the target, groups with members, and devices.

use ferry_core::model::{DirObject, ObjectKind};
use ferry_core::sid::entra_sid_from_object_id;

const FIRST: [&str; 40] = [
    "Ann", "Bob", "Carla", "Dev", "Emma", "Femi", "Greta", "Hiro", "Ines", "Jon", "Kofi", "Lena",
    "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Uma", "Viktor", "Wen",
    "Xavier", "Yara", "Zoë", "Ana", "Björn", "Chloé", "Dmitri", "Élodie", "Farah", "Gustav",
    "Hana", "Igor", "Jana", "Kai", "Léa", "Miguel", "Nadia",
];
const LAST: [&str; 40] = [
    "Lee",
    "Smith",
    "Okafor",
    "García",
    "Müller",
    "Rossi",
    "Tanaka",
    "Kowalski",
    "Nguyen",
    "Silva",
    "Johansson",
    "Novak",
    "Dubois",
    "Khan",
    "O'Brien",
    "Hansen",
    "Ivanova",
    "Costa",
    "Yilmaz",
    "Schmidt",
    "Park",
    "Fischer",
    "Moreau",
    "Horvat",
    "Nielsen",
    "Patel",
    "Sato",
    "Berg",
    "Lopez",
    "Wagner",
    "Kim",
    "Meyer",
    "Bauer",
    "Clark",
    "Weber",
    "Lund",
    "Rey",
    "Haas",
    "Vidal",
    "Ito",
];
const DEPARTMENTS: [&str; 8] = [
    "Sales",
    "Finance",
    "Engineering",
    "Support",
    "Legal",
    "Marketing",
    "Operations",
    "HR",
];

/// A deterministic generator (SplitMix64): reproducible data without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// True with probability `per_mille`/1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
    /// A random (version 4) GUID string.
    pub fn guid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }
}

/// What a generated pair is expected to produce with the quickstart's match rules.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub users_matched: u64,
    pub users_unmatched: u64,
    pub users_ambiguous: u64,
}

pub struct Sample {
    pub source: Vec<DirObject>,
    pub target: Vec<DirObject>,
    pub expected: Expected,
}

fn ascii_fold(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            'é' | 'É' | 'è' => Some('e'),
            'ë' => Some('e'),
            'í' => Some('i'),
            'ü' | 'ú' => Some('u'),
            'ö' | 'ó' => Some('o'),
            'ä' | 'á' => Some('a'),
            'ç' => Some('c'),
            '\'' => None,
            c => Some(c),
        })
        .collect()
}

/// Generates a source/target pair with `users` source users (plus groups and devices when asked).
pub fn generate(users: usize, with_groups_and_devices: bool, seed: u64) -> Sample {
    let mut rng = Rng::new(seed);
    let mut source = Vec::with_capacity(users + users / 20 + users / 2);
    let mut target = Vec::with_capacity(users + users / 20 + users / 2);
    let mut expected = Expected::default();
    let mut translated: Vec<Option<usize>> = Vec::with_capacity(users);
    for i in 0..users {
        let first = FIRST[i % FIRST.len()];
        let last = LAST[(i / FIRST.len()) % LAST.len()];
        let n = i / (FIRST.len() * LAST.len());
        let local = if n == 0 {
            format!("{}.{}", ascii_fold(first), ascii_fold(last)).to_lowercase()
        } else {
            format!("{}.{}{n}", ascii_fold(first), ascii_fold(last)).to_lowercase()
        };
        // Display names as AD has them: "Surname, Given", now and then a nickname in quotes,
        // and a few that a spreadsheet would take for a formula.
        let name = match i % 100 {
            7 => format!(
                "{last}, {first} \"{}\"",
                first.chars().take(3).collect::<String>()
            ),
            43 => format!("={last}, {first}"),
            _ => format!("{last}, {first}"),
        };
        let dept = DEPARTMENTS[rng.below(DEPARTMENTS.len() as u64) as usize];
        let id = rng.guid();
        let mut s = DirObject::new(ObjectKind::User, id.clone(), name.clone());
        s.upn = Some(format!("{local}@contoso.test"));
        s.mail = Some(format!("{local}@contoso.test"));
        s.sid = entra_sid_from_object_id(&id).ok();
        s.uid_number = Some(10_000 + i as u32);
        s.gid_number = Some(10_000);
        s.attrs = vec![
            ("department".into(), dept.into()),
            ("employeeId".into(), format!("E{:07}", i + 1)),
        ];
        source.push(s);

        let roll = rng.below(1000);
        if roll < 40 {
            // Left the company: only in the source.
            expected.users_unmatched += 1;
            translated.push(None);
            continue;
        }
        let tid = rng.guid();
        let mut t = DirObject::new(ObjectKind::User, tid.clone(), name.clone());
        t.sid = entra_sid_from_object_id(&tid).ok();
        t.uid_number = Some(200_000 + i as u32);
        t.gid_number = Some(200_000);
        t.attrs = vec![
            ("department".into(), dept.into()),
            ("employeeId".into(), format!("E{:07}", i + 1)),
        ];
        let mail = if roll < 70 {
            // Changed their name: a new mail, still the same employee id.
            format!("{local}.new@fabrikam.test")
        } else if roll < 270 {
            // Case differs in the target.
            let mut m = format!("{local}@Fabrikam.test");
            m[..1].make_ascii_uppercase();
            m
        } else {
            format!("{local}@fabrikam.test")
        };
        t.upn = Some(mail.clone());
        t.mail = Some(mail.clone());
        translated.push(Some(target.len()));
        target.push(t);
        if (270..280).contains(&roll) {
            // A duplicate mailbox in the target: ambiguous by mail, and by employee id.
            let did = rng.guid();
            let mut d =
                DirObject::new(ObjectKind::User, did.clone(), format!("{name} (duplicate)"));
            d.upn = Some(format!("{local}.dup@fabrikam.test"));
            d.mail = Some(mail);
            d.sid = entra_sid_from_object_id(&did).ok();
            d.attrs = vec![("employeeId".into(), format!("E{:07}", i + 1))];
            target.push(d);
            expected.users_ambiguous += 1;
            translated.pop();
            translated.push(None);
        } else {
            expected.users_matched += 1;
        }
    }
    // New hires: only in the target.
    for j in 0..users / 50 {
        let tid = rng.guid();
        let mut t = DirObject::new(ObjectKind::User, tid.clone(), format!("New Hire {j}"));
        t.upn = Some(format!("new.hire{j}@fabrikam.test"));
        t.mail = t.upn.clone();
        t.sid = entra_sid_from_object_id(&tid).ok();
        t.attrs = vec![("employeeId".into(), format!("N{j:07}"))];
        target.push(t);
    }
    if with_groups_and_devices {
        let n_users = source.len();
        for g in 0..(users / 30).max(1) {
            let gid = rng.guid();
            let name = format!(
                "{}-{:03}",
                DEPARTMENTS[g % DEPARTMENTS.len()],
                g / DEPARTMENTS.len()
            );
            let mut s = DirObject::new(ObjectKind::Group, gid.clone(), name.clone());
            s.sid = entra_sid_from_object_id(&gid).ok();
            s.gid_number = Some(50_000 + g as u32);
            let mut tmembers = Vec::new();
            for _ in 0..(5 + rng.below(25)) {
                let m = rng.below(n_users as u64) as usize;
                if !s.members.contains(&source[m].id) {
                    s.members.push(source[m].id.clone());
                    if let Some(Some(t)) = translated.get(m)
                        && rng.chance(700)
                    {
                        tmembers.push(target[*t].id.clone());
                    }
                }
            }
            source.push(s);
            if !rng.chance(100) {
                let tgid = rng.guid();
                let tname = if rng.chance(200) {
                    name.to_uppercase()
                } else {
                    name
                };
                let mut t = DirObject::new(ObjectKind::Group, tgid.clone(), tname);
                t.sid = entra_sid_from_object_id(&tgid).ok();
                t.gid_number = Some(250_000 + g as u32);
                t.members = tmembers;
                target.push(t);
            }
        }
        for d in 0..users / 2 {
            let id = rng.guid();
            let name = format!("CONTOSO-LT-{:05}", d + 1);
            let mut s = DirObject::new(ObjectKind::Device, id, name.clone());
            let device_id = rng.guid();
            s.attrs = vec![
                ("deviceId".into(), device_id.clone()),
                (
                    "operatingSystem".into(),
                    if d % 5 == 0 { "Linux" } else { "Windows" }.into(),
                ),
            ];
            source.push(s);
            if rng.chance(300) {
                // Pre-staged in the target under the same name.
                let mut t = DirObject::new(ObjectKind::Device, rng.guid(), name);
                t.attrs = vec![("deviceId".into(), device_id)];
                target.push(t);
            }
        }
    }
    for o in source.iter_mut().chain(target.iter_mut()) {
        o.normalise();
    }
    Sample {
        source,
        target,
        expected,
    }
}

macro_rules! user_rules {
    () => {
        r#"[[sync_profile.match]]
source_attribute = "mail"
target_attribute = "mail"
transforms = [{ replace_suffix = ["@contoso.test", "@fabrikam.test"] }]
object_types = ["user"]

[[sync_profile.match]]
source_attribute = "employeeId"
target_attribute = "employeeId"
object_types = ["user"]
"#
    };
}

/// The user match rules for this data, as TOML: mail with the domain renamed, then employee id.
pub const USER_RULES: &str = user_rules!();

/// The match rules the quickstart configures for this data, as TOML: [`USER_RULES`], then groups
/// by name.
pub const QUICKSTART_RULES: &str = concat!(
    user_rules!(),
    r#"
[[sync_profile.match]]
source_attribute = "name"
target_attribute = "name"
object_types = ["group"]
"#
);

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::config::Config;

    #[test]
    fn generated_pair_matches_as_expected() {
        let s = generate(3000, true, 7);
        assert_eq!(generate(3000, true, 7).source, s.source, "deterministic");
        let cfg = format!(
            "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"s.json\"\n[[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"t.json\"\n\
             [[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"match-only\"\n{QUICKSTART_RULES}"
        );
        let c = Config::parse(&cfg, "q").unwrap();
        let p = ferry_core::plan::build(&c.profiles[0], "fp", &s.source, &s.target);
        let u = p.counts.by_kind[&ObjectKind::User];
        assert_eq!(u.matched, s.expected.users_matched);
        assert_eq!(u.unmatched, s.expected.users_unmatched);
        assert_eq!(u.ambiguous + u.conflict, s.expected.users_ambiguous);
        assert!(
            s.expected.users_unmatched > 50 && s.expected.users_ambiguous > 10,
            "{:?}",
            s.expected
        );
        let g = p.counts.by_kind[&ObjectKind::Group];
        assert!(g.matched > 80 && g.unmatched > 0, "{g:?}");
        // Every snapshot round-trips.
        assert_eq!(
            ferry_core::snapshot::parse_json(&ferry_core::snapshot::render_json(&s.target))
                .unwrap(),
            s.target
        );
    }
}

#[cfg(test)]
mod large {
    #[test]
    fn counts_hold_at_scale() {
        let s = super::generate(120_000, false, 1);
        let cfg = ferry_core::config::Config::parse(
            &format!(
                "[[directory]]\nname = \"a\"\nkind = \"file\"\npath = \"a\"\n[[directory]]\nname = \"b\"\nkind = \"file\"\npath = \"b\"\n\
                 [[sync_profile]]\nname = \"u\"\nsource = \"a\"\ntarget = \"b\"\nmode = \"match-only\"\nobject_types = [\"user\"]\n{}",
                super::USER_RULES
            ),
            "t",
        )
        .unwrap();
        let p = ferry_core::plan::build(&cfg.profiles[0], "fp", &s.source, &s.target);
        let u = p.counts.by_kind[&ferry_core::ObjectKind::User];
        eprintln!("{u:?} {:?}", s.expected);
        assert_eq!(u.unmatched, s.expected.users_unmatched);
    }
}
