//! SDDL text: never panics; what parses prints as SDDL that parses to the same descriptor (Samba's
//! fuzz_sddl_parse invariant), and serializes to bytes that parse back to it.
#![no_main]

use ferry_winsec::sd::SecurityDescriptor;
use ferry_winsec::{Sid, sddl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let domain = Sid::new(5, &[21, 2457507606, 2709100691, 398136650]).ok();
    for d in [None, domain.as_ref()] {
        let Ok(sd) = sddl::parse(text, d) else {
            continue;
        };
        if let Ok(printed) = sddl::to_sddl(&sd, d) {
            let again = sddl::parse(&printed, d).expect("printed SDDL parses");
            assert_eq!(again, sd, "{text:?} printed as {printed:?}");
        }
        if let Ok(bytes) = sd.to_bytes() {
            assert_eq!(
                SecurityDescriptor::parse(&bytes).expect("own bytes parse"),
                sd
            );
        }
    }
});
