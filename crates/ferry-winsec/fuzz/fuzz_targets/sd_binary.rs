//! Binary security descriptors: never panics; `parse(serialize(sd)) == sd`; translation of what
//! parses gives bytes that parse, and a second translation changes nothing.
#![no_main]

use ferry_winsec::Sid;
use ferry_winsec::sd::SecurityDescriptor;
use ferry_winsec::translate::{Mode, SidMap, translate_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sd) = SecurityDescriptor::parse(data) else {
        return;
    };
    if let Ok(b) = sd.to_bytes() {
        assert_eq!(SecurityDescriptor::parse(&b).expect("own bytes parse"), sd);
    }
    let mut map = SidMap::new();
    for (s, t) in [
        ([5u32, 18], [5u32, 19]),
        ([5, 11], [12, 1]),
        ([3, 0], [1, 0]),
    ] {
        let from = Sid::new(u64::from(s[0]), &s[1..]).expect("sid");
        let to = Sid::new(u64::from(t[0]), &[t[1], 7, 7, 7, 7]).expect("sid");
        map.insert(from, to).expect("map");
    }
    for mode in [Mode::AddAndRemove, Mode::Add] {
        if let Ok(Some(t)) = translate_bytes(data, &map, mode) {
            SecurityDescriptor::parse(&t).expect("translated bytes parse");
            assert_eq!(
                translate_bytes(&t, &map, mode).expect("again"),
                None,
                "idempotent"
            );
        }
    }
});
