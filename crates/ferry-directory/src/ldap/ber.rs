//! The subset of BER that LDAP uses (RFC 4511 §5.1: definite lengths, one-octet tags), read in
//! place: a [`Ber`] cursor hands out the contents of each element as a slice of the message, so
//! decoding an entry allocates nothing until a value is kept. Requests are small and few; they are
//! written with [`tlv`] and the primitives below.

use ldap3::asn1::{PL, StructureTag, TagClass};

/// A message or element that is not BER as LDAP has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// Universal tags and the LDAP application tags this client reads or writes.
pub(crate) mod tag {
    pub const BOOLEAN: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const OCTET_STRING: u8 = 0x04;
    pub const ENUMERATED: u8 = 0x0a;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    pub const BIND_REQUEST: u8 = 0x60;
    pub const BIND_RESPONSE: u8 = 0x61;
    pub const UNBIND_REQUEST: u8 = 0x42;
    pub const SEARCH_REQUEST: u8 = 0x63;
    pub const SEARCH_RESULT_ENTRY: u8 = 0x64;
    pub const SEARCH_RESULT_DONE: u8 = 0x65;
    pub const SEARCH_RESULT_REFERENCE: u8 = 0x73;
    pub const EXTENDED_RESPONSE: u8 = 0x78;
    pub const INTERMEDIATE_RESPONSE: u8 = 0x79;
    /// `[0]` constructed: the controls of an LDAPMessage.
    pub const CONTROLS: u8 = 0xa0;
    /// `[3]` constructed: the referral URIs of an LDAPResult.
    pub const REFERRAL: u8 = 0xa3;
    /// `[0]` primitive: a simple bind's password.
    pub const SIMPLE_AUTH: u8 = 0x80;
}

/// Reads an element's header from the start of `b`: `(tag, content length, header length)`, or
/// `None` when `b` ends before the header does.
pub(crate) fn header(b: &[u8]) -> Result<Option<(u8, usize, usize)>, Malformed> {
    let (Some(&t), Some(&l)) = (b.first(), b.get(1)) else {
        return Ok(None);
    };
    if t & 0x1f == 0x1f {
        // A tag number of 31 or more: LDAP has none.
        return Err(Malformed);
    }
    if l < 0x80 {
        return Ok(Some((t, usize::from(l), 2)));
    }
    let n = usize::from(l & 0x7f);
    if n == 0 || n == 0x7f {
        // The indefinite form, which LDAP forbids, and a reserved value.
        return Err(Malformed);
    }
    let Some(octets) = b.get(2..2 + n) else {
        return Ok(None);
    };
    let mut len = 0usize;
    for &o in octets {
        len = len
            .checked_mul(256)
            .and_then(|v| v.checked_add(usize::from(o)))
            .ok_or(Malformed)?;
    }
    Ok(Some((t, len, 2 + n)))
}

/// A cursor over a sequence of BER elements.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ber<'a>(&'a [u8]);

impl<'a> Ber<'a> {
    pub fn new(b: &'a [u8]) -> Ber<'a> {
        Ber(b)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tag of the next element, if any.
    pub fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    /// The next element: its tag and its contents.
    #[inline]
    pub fn next(&mut self) -> Result<(u8, &'a [u8]), Malformed> {
        let (t, len, h) = header(self.0)?.ok_or(Malformed)?;
        let end = h.checked_add(len).ok_or(Malformed)?;
        let content = self.0.get(h..end).ok_or(Malformed)?;
        self.0 = &self.0[end..];
        Ok((t, content))
    }

    /// The contents of the next element, which must have tag `t`.
    #[inline]
    pub fn expect(&mut self, t: u8) -> Result<&'a [u8], Malformed> {
        match self.next()? {
            (got, content) if got == t => Ok(content),
            _ => Err(Malformed),
        }
    }
}

/// An INTEGER or ENUMERATED's value (two's complement, at most eight octets).
pub(crate) fn int(content: &[u8]) -> Result<i64, Malformed> {
    if content.is_empty() || content.len() > 8 {
        return Err(Malformed);
    }
    let first = i64::from(content[0] as i8);
    Ok(content[1..]
        .iter()
        .fold(first, |acc, &b| (acc << 8) | i64::from(b)))
}

/// Writes an element with tag `t` whose contents `f` writes, fixing its length afterwards.
pub(crate) fn tlv(out: &mut Vec<u8>, t: u8, f: impl FnOnce(&mut Vec<u8>)) {
    out.push(t);
    let at = out.len();
    out.push(0);
    f(out);
    let len = out.len() - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
    } else {
        let octets = len.to_be_bytes();
        let skip = octets.iter().take_while(|&&o| o == 0).count();
        let octets = &octets[skip..];
        out[at] = 0x80 | octets.len() as u8;
        out.splice(at + 1..at + 1, octets.iter().copied());
    }
}

pub(crate) fn octets(out: &mut Vec<u8>, t: u8, v: &[u8]) {
    tlv(out, t, |o| o.extend_from_slice(v));
}

pub(crate) fn integer(out: &mut Vec<u8>, t: u8, v: i64) {
    let b = v.to_be_bytes();
    // The shortest two's complement form: drop leading octets that only repeat the sign.
    let mut i = 0;
    while i < 7 && ((b[i] == 0 && b[i + 1] & 0x80 == 0) || (b[i] == 0xff && b[i + 1] & 0x80 != 0)) {
        i += 1;
    }
    octets(out, t, &b[i..]);
}

pub(crate) fn boolean(out: &mut Vec<u8>, v: bool) {
    octets(out, tag::BOOLEAN, &[if v { 0xff } else { 0 }]);
}

/// Writes an element built with `ldap3`'s ASN.1 types (the search filter `ldap3` parses).
pub(crate) fn structure(out: &mut Vec<u8>, s: &StructureTag) -> Result<(), Malformed> {
    let class = match s.class {
        TagClass::Universal => 0x00,
        TagClass::Application => 0x40,
        TagClass::Context => 0x80,
        TagClass::Private => 0xc0,
    };
    let id = u8::try_from(s.id)
        .ok()
        .filter(|&i| i < 0x1f)
        .ok_or(Malformed)?;
    match &s.payload {
        PL::P(v) => octets(out, class | id, v),
        PL::C(children) => {
            let mut result = Ok(());
            tlv(out, class | 0x20 | id, |o| {
                for c in children {
                    if let Err(e) = structure(o, c) {
                        result = Err(e);
                    }
                }
            });
            result?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::asn1::ASNTag;

    #[test]
    fn lengths_short_long_and_incomplete() {
        assert_eq!(header(&[0x04, 0x03, b'a']), Ok(Some((0x04, 3, 2))));
        assert_eq!(header(&[0x30, 0x82, 0x01, 0x00]), Ok(Some((0x30, 256, 4))));
        assert_eq!(
            header(&[0x30, 0x84, 0, 0, 0x01, 0x00]),
            Ok(Some((0x30, 256, 6)))
        );
        assert_eq!(header(&[0x30]), Ok(None));
        assert_eq!(header(&[0x30, 0x82, 0x01]), Ok(None));
        assert_eq!(header(&[0x30, 0x80]), Err(Malformed), "indefinite length");
        assert_eq!(header(&[0x1f, 0x01]), Err(Malformed), "multi-octet tag");
        let huge = [0x30, 0x89, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(header(&huge), Err(Malformed), "a length past usize");
    }

    #[test]
    fn cursor_reads_in_place_and_rejects_overruns() {
        let b = [0x04, 0x02, b'h', b'i', 0x02, 0x01, 0x05];
        let mut c = Ber::new(&b);
        assert_eq!(c.expect(tag::OCTET_STRING), Ok(&b"hi"[..]));
        assert_eq!(c.peek(), Some(tag::INTEGER));
        assert_eq!(c.expect(tag::INTEGER).map(int), Ok(Ok(5)));
        assert!(c.is_empty());
        assert_eq!(Ber::new(&[0x04, 0x05, b'x']).next(), Err(Malformed));
        assert_eq!(Ber::new(&[0x04, 0x01, b'x']).expect(0x02), Err(Malformed));
        assert_eq!(Ber::new(&[0x04]).next(), Err(Malformed));
    }

    #[test]
    fn integers_round_trip() {
        for v in [
            0,
            1,
            127,
            128,
            255,
            256,
            -1,
            -128,
            -129,
            i64::from(i32::MAX),
            i64::MAX,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            integer(&mut out, tag::INTEGER, v);
            let mut c = Ber::new(&out);
            assert_eq!(
                int(c.expect(tag::INTEGER).unwrap()),
                Ok(v),
                "{v}: {out:02x?}"
            );
        }
        let mut out = Vec::new();
        integer(&mut out, tag::INTEGER, 128);
        assert_eq!(out, [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(int(&[]), Err(Malformed));
    }

    #[test]
    fn long_contents_get_long_lengths() {
        let mut out = Vec::new();
        octets(&mut out, tag::OCTET_STRING, &[7; 300]);
        assert_eq!(&out[..4], [0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(
            Ber::new(&out).expect(tag::OCTET_STRING),
            Ok(&[7u8; 300][..])
        );
    }

    #[test]
    fn filters_encode_as_ldap3_does() {
        let f = ldap3::parse_filter("(&(objectClass=user)(!(cn=a*b))(uSNChanged>=5))")
            .unwrap()
            .into_structure();
        let mut ours = Vec::new();
        structure(&mut ours, &f).unwrap();
        let mut theirs = bytes::BytesMut::new();
        ldap3::asn1::write::encode_into(&mut theirs, f).unwrap();
        assert_eq!(ours, &theirs[..]);
    }
}
