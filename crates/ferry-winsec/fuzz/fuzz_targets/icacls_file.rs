//! `icacls /save` files: never panics; what parses writes back to bytes that parse the same.
#![no_main]

use ferry_winsec::icacls::SaveFile;
use ferry_winsec::sddl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = SaveFile::parse(data) else {
        return;
    };
    let again = SaveFile::parse(&f.to_bytes()).expect("written file parses");
    assert_eq!(again.entries.len(), f.entries.len());
    for (a, b) in again.entries.iter().zip(&f.entries) {
        assert_eq!((&a.path, &a.sddl), (&b.path, &b.sddl));
        let _ = sddl::parse(&a.sddl, None);
    }
});
