//! The file `icacls PATH /save FILE` writes and `icacls DIR /restore FILE` reads: UTF-16LE, per
//! object a line with its path (relative to the directory saved) and a line with its DACL in
//! SDDL, lines ending in CRLF.

/// One object of a save file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub sddl: String,
    /// 1-based line of the path (the SDDL is on the next).
    pub line: usize,
}

/// A parsed save file, with what is needed to write it back the same way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaveFile {
    pub entries: Vec<Entry>,
    pub bom: bool,
    pub crlf: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IcaclsError {
    #[error("the file has an odd number of bytes ({0}); UTF-16LE needs pairs")]
    OddLength(usize),
    #[error("line {line}: not valid UTF-16 ({what})")]
    Utf16 { line: usize, what: String },
    #[error("line {0}: a path with no SDDL line after it")]
    Unpaired(usize),
    #[error("line {0}: empty path")]
    EmptyPath(usize),
    #[error("line {0}: a carriage return inside the line (lines end with CR LF)")]
    StrayCarriageReturn(usize),
}

impl SaveFile {
    pub fn parse(bytes: &[u8]) -> Result<SaveFile, IcaclsError> {
        if !bytes.len().is_multiple_of(2) {
            return Err(IcaclsError::OddLength(bytes.len()));
        }
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let (bom, units) = match units.split_first() {
            Some((0xfeff, rest)) => (true, rest),
            _ => (false, &units[..]),
        };
        let text = String::from_utf16(units).map_err(|e| {
            // Name the line of the first unpaired surrogate.
            let bad = char::decode_utf16(units.iter().copied()).position(|c| c.is_err());
            let line = bad.map_or(1, |p| {
                1 + units[..p.min(units.len())]
                    .iter()
                    .filter(|&&u| u == 0x0a)
                    .count()
            });
            IcaclsError::Utf16 {
                line,
                what: e.to_string(),
            }
        })?;
        let crlf = text.contains("\r\n") || !text.contains('\n');
        let mut lines: Vec<&str> = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .collect();
        if lines.last() == Some(&"") {
            lines.pop();
        }
        if let Some(i) = lines.iter().position(|l| l.contains('\r')) {
            return Err(IcaclsError::StrayCarriageReturn(i + 1));
        }
        let mut entries = Vec::with_capacity(lines.len() / 2);
        let mut it = lines.iter().enumerate();
        while let Some((i, path)) = it.next() {
            if path.is_empty() {
                return Err(IcaclsError::EmptyPath(i + 1));
            }
            let Some((_, sddl)) = it.next() else {
                return Err(IcaclsError::Unpaired(i + 1));
            };
            entries.push(Entry {
                path: path.to_string(),
                sddl: sddl.to_string(),
                line: i + 1,
            });
        }
        Ok(SaveFile { entries, bom, crlf })
    }

    /// Serializes as icacls writes it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let eol = if self.crlf { "\r\n" } else { "\n" };
        let mut out = Vec::new();
        if self.bom {
            out.extend_from_slice(&0xfeffu16.to_le_bytes());
        }
        for e in &self.entries {
            for s in [&e.path, &e.sddl] {
                for u in s.encode_utf16().chain(eol.encode_utf16()) {
                    out.extend_from_slice(&u.to_le_bytes());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn round_trip_and_refusals() {
        let f = SaveFile::parse(&utf16("a b\r\nD:(A;;FA;;;SY)\r\n")).unwrap();
        assert_eq!(f.entries[0].path, "a b");
        assert!(f.crlf && !f.bom);
        assert_eq!(SaveFile::parse(&f.to_bytes()).unwrap(), f);
        // Found by the fuzzer: a lone CR would not survive a write.
        assert_eq!(
            SaveFile::parse(&utf16("d\nx\r\r")),
            Err(IcaclsError::StrayCarriageReturn(2))
        );
        assert_eq!(
            SaveFile::parse(&utf16("\r\nD:\r\n")),
            Err(IcaclsError::EmptyPath(1))
        );
        let bad = [0x00, 0xd8, 0x41, 0x00]; // an unpaired surrogate
        assert!(matches!(
            SaveFile::parse(&bad),
            Err(IcaclsError::Utf16 { line: 1, .. })
        ));
    }
}
