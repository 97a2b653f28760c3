//! The one key a computer's host name is compared by: a batch's computers, an agent's host name
//! and its live claim on that name are all written with [`host_key`], computed here in Rust, never
//! by the database's `lower()` (SQLite's folds only ASCII; PostgreSQL's depends on the database's
//! ctype), so that "ÅSA-PC" typed as "åsa-pc" is one computer on both backends.

/// A host name's key: its Unicode lower case, with the Greek final sigma (ς, which Rust's lower
/// case writes at the end of a word) as σ, so that a name's key does not depend on which of its
/// letters were capitals. A letter whose capital is more than one letter keeps its own key: "ß" is
/// not "SS" (nor is Turkish "ı" "I"), as Windows, which compares names letter by letter, also
/// keeps them apart; "ẞ" and "ß" are one. Idempotent: a key is its own key.
pub fn host_key(name: &str) -> String {
    let lower = if name.is_ascii() {
        name.to_ascii_lowercase()
    } else {
        name.to_lowercase()
    };
    if lower.contains('ς') {
        lower.replace('ς', "σ")
    } else {
        lower
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn real_world_names() {
        assert_eq!(host_key("ÅSA-PC"), "åsa-pc");
        assert_eq!(host_key("åsa-pc"), host_key("ÅSA-PC"));
        assert_eq!(host_key("ÖREBRO-01"), "örebro-01");
        // Turkish dotted capital I: "i" and a combining dot, whichever way it was typed.
        assert_eq!(host_key("İZMİR-PC"), "i\u{307}zmi\u{307}r-pc");
        assert_eq!(host_key("i\u{307}zmi\u{307}r-PC"), host_key("İZMİR-PC"));
        assert_eq!(host_key("STRAẞE-PC"), host_key("straße-pc"));
        assert_ne!(host_key("STRASSE-PC"), host_key("straße-pc"));
        assert_eq!(host_key("ΑΘΗΝΑΣ"), host_key("αθηνας"));
        assert_eq!(host_key("ΑΘΗΝΑΣ"), host_key("αθηνασ"));
        assert_eq!(host_key("PC-0001"), "pc-0001");
    }

    /// Letters as pairs of their capital and small forms, ASCII and not, each of which a host
    /// name may be typed with.
    const LETTERS: &[(&str, &str)] = &[
        ("A", "a"),
        ("Z", "z"),
        ("Å", "å"),
        ("Ä", "ä"),
        ("Ö", "ö"),
        ("Ø", "ø"),
        ("Æ", "æ"),
        ("É", "é"),
        ("Ñ", "ñ"),
        ("Ç", "ç"),
        ("Ł", "ł"),
        ("Ş", "ş"),
        ("Ğ", "ğ"),
        ("İ", "i\u{307}"),
        ("ẞ", "ß"),
        ("Σ", "σ"),
        ("Σ", "ς"),
        ("Ж", "ж"),
        ("Я", "я"),
        ("Ω", "ω"),
        ("-", "-"),
        ("0", "0"),
        ("9", "9"),
    ];

    proptest! {
        #[test]
        fn idempotent(name in "\\PC{0,24}") {
            let k = host_key(&name);
            prop_assert_eq!(host_key(&k), k);
        }

        #[test]
        fn ignores_case(letters in proptest::collection::vec((0..LETTERS.len(), any::<bool>(), any::<bool>()), 0..24)) {
            let pick = |capital: bool, i: usize| if capital { LETTERS[i].0 } else { LETTERS[i].1 };
            let one: String = letters.iter().map(|&(i, a, _)| pick(a, i)).collect();
            let other: String = letters.iter().map(|&(i, _, b)| pick(b, i)).collect();
            prop_assert_eq!(host_key(&one), host_key(&other), "{} / {}", one, other);
        }
    }
}
