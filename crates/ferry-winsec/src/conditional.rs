//! Conditional expressions of callback ACEs (`XA`, `XD`, `XU`, `ZA`; MS-DTYP 2.4.4.17 and
//! 2.5.1.1): SDDL text compiled to the binary token stream Windows stores (`artx`, then tokens in
//! reverse Polish order, zero-padded to 4 bytes), and the stream printed back as Windows prints it
//! — every operand of `&&`, `||` and `!` in parentheses, attribute prefixes in capitals.

use crate::sid::{AliasLookup, Sid, alias_sid, sid_alias};
use std::fmt::Write as _;

const MAGIC: &[u8; 4] = b"artx";

/// Operators with an SDDL name, by token. Unary ones take one operand.
const UNARY: &[(&str, u8)] = &[
    ("Member_of", 0x89),
    ("Device_Member_of", 0x8a),
    ("Member_of_any", 0x8b),
    ("Device_Member_of_any", 0x8c),
    ("Not_Member_of", 0x90),
    ("Not_Device_Member_of", 0x91),
    ("Not_Member_of_any", 0x92),
    ("Not_Device_Member_of_any", 0x93),
    ("Exists", 0x87),
    ("Not_Exists", 0x8d),
];
const RELATIONAL: &[(&str, u8)] = &[
    ("==", 0x80),
    ("!=", 0x81),
    ("<", 0x82),
    ("<=", 0x83),
    (">", 0x84),
    (">=", 0x85),
    ("Contains", 0x86),
    ("Any_of", 0x88),
    ("Not_Contains", 0x8e),
    ("Not_Any_of", 0x8f),
];
const AND: u8 = 0xa0;
const OR: u8 = 0xa1;
const NOT: u8 = 0xa2;
const ATTRIBUTES: &[(&str, u8)] = &[("@USER.", 0xf9), ("@RESOURCE.", 0xfa), ("@DEVICE.", 0xfb)];
const LOCAL: u8 = 0xf8;

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Attr(u8, String),
    /// Value bits, sign byte (1 `+`, 2 `-`, 3 none), base byte (1 octal, 2 decimal, 3 hex).
    Int(u64, u8, u8),
    Str(String),
    Octets(Vec<u8>),
    Sid(Sid),
    Composite(Vec<Node>),
    Op(u8, Vec<Node>),
}

// ---- SDDL text → tokens -------------------------------------------------------------------

/// Deepest nesting of an expression (parentheses, `!`, composites) ferry reads or prints; deeper
/// input is refused rather than risk the stack.
pub const MAX_DEPTH: usize = 256;

struct Parser<'a> {
    s: &'a str,
    i: usize,
    domain: Option<&'a Sid>,
    depth: usize,
}

type R<T> = Result<T, (usize, String)>;

impl<'a> Parser<'a> {
    fn err<T>(&self, what: impl Into<String>) -> R<T> {
        Err((self.i, what.into()))
    }
    fn ws(&mut self) {
        while self.s[self.i..].starts_with([' ', '\t']) {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<char> {
        self.ws();
        self.s[self.i..].chars().next()
    }
    fn eat(&mut self, t: &str) -> bool {
        self.ws();
        if self.s[self.i..].starts_with(t) {
            self.i += t.len();
            true
        } else {
            false
        }
    }
    fn expect(&mut self, t: &str) -> R<()> {
        if self.eat(t) {
            Ok(())
        } else {
            self.err(format!("expected `{t}`"))
        }
    }
    /// A word: letters, digits, `_`.
    fn word(&mut self) -> &'a str {
        self.ws();
        let rest = &self.s[self.i..];
        let n = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        &rest[..n]
    }

    fn or(&mut self) -> R<Node> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(format!(
                "the expression is nested more than {MAX_DEPTH} deep"
            ));
        }
        let mut n = self.and()?;
        while self.eat("||") {
            n = Node::Op(OR, vec![n, self.and()?]);
        }
        self.depth -= 1;
        Ok(n)
    }
    fn and(&mut self) -> R<Node> {
        let mut n = self.term()?;
        while self.eat("&&") {
            n = Node::Op(AND, vec![n, self.term()?]);
        }
        Ok(n)
    }
    fn term(&mut self) -> R<Node> {
        if self.peek() == Some('!') && !self.s[self.i..].starts_with("!=") {
            self.i += 1;
            if self.peek() != Some('(') {
                return self.err("`!` needs a parenthesised operand");
            }
            self.i += 1;
            let n = self.or()?;
            self.expect(")")?;
            return Ok(Node::Op(NOT, vec![n]));
        }
        if self.eat("(") {
            let n = self.or()?;
            self.expect(")")?;
            return Ok(n);
        }
        let w = self.word();
        if let Some(&(_, op)) = UNARY.iter().find(|(n, _)| n.eq_ignore_ascii_case(w)) {
            self.i += w.len();
            let arg = if op == 0x87 || op == 0x8d {
                self.attribute()?
            } else {
                self.sid_operand()?
            };
            return Ok(Node::Op(op, vec![arg]));
        }
        let lhs = self.attribute()?;
        self.ws();
        let rest = &self.s[self.i..];
        let symbolic = ["==", "!=", "<=", ">=", "<", ">"]
            .into_iter()
            .find(|o| rest.starts_with(o));
        let op = match symbolic {
            Some(o) => {
                self.i += o.len();
                RELATIONAL.iter().find(|(n, _)| *n == o).map(|x| x.1)
            }
            None => {
                let w = self.word();
                let op = RELATIONAL
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(w))
                    .map(|x| x.1);
                if op.is_some() {
                    self.i += w.len();
                }
                op
            }
        };
        let Some(op) = op else {
            return Ok(lhs); // an attribute on its own is a boolean
        };
        let rhs = self.value(true)?;
        Ok(Node::Op(op, vec![lhs, rhs]))
    }
    /// `@User.x`, `@Device.x`, `@Resource.x`, or a local attribute name.
    fn attribute(&mut self) -> R<Node> {
        self.ws();
        let rest = &self.s[self.i..];
        let (kind, skip) = match ATTRIBUTES.iter().find(|(p, _)| {
            rest.get(..p.len())
                .is_some_and(|x| x.eq_ignore_ascii_case(p))
        }) {
            Some((p, k)) => (*k, p.len()),
            None => (LOCAL, 0),
        };
        let name_start = self.i + skip;
        let name: &str = &self.s[name_start..];
        let n = name
            .find(|c: char| {
                !(c.is_alphanumeric() || matches!(c, '_' | ':' | '/' | '.' | '%' | '-'))
            })
            .unwrap_or(name.len());
        if n == 0 || (kind == LOCAL && !name.starts_with(|c: char| c.is_alphabetic() || c == '_')) {
            return self.err(
                "expected an attribute (`@User.name`, `@Device.name`, `@Resource.name` or a name)",
            );
        }
        self.i = name_start + n;
        Ok(Node::Attr(kind, name[..n].to_string()))
    }
    fn sid_operand(&mut self) -> R<Node> {
        if self.eat("(") {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return self.err(format!(
                    "the expression is nested more than {MAX_DEPTH} deep"
                ));
            }
            let n = self.sid_operand()?;
            self.expect(")")?;
            self.depth -= 1;
            return Ok(n);
        }
        // SIDs, by the specification; Windows takes any value (`Member_of {1, 2, 3}`).
        self.value(true)
    }
    fn sid(&mut self) -> R<Node> {
        let w = self.word();
        if !w.eq_ignore_ascii_case("SID") {
            return self.err("expected SID(…)");
        }
        self.i += w.len();
        self.expect("(")?;
        self.ws();
        let start = self.i;
        let Some(len) = self.s[start..].find(')') else {
            return self.err("SID( is not closed");
        };
        let text = self.s[start..start + len].trim_end();
        let sid = if text.len() > 2 && text.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("S-")) {
            Sid::parse(text).map_err(|e| (start, e.to_string()))?
        } else {
            match alias_sid(text, self.domain) {
                AliasLookup::Sid(s) => s,
                AliasLookup::NeedsDomain => {
                    return Err((
                        start,
                        format!(
                            "`{text}` is relative to a domain; give the domain SID (--domain-sid)"
                        ),
                    ));
                }
                AliasLookup::Unknown => {
                    return Err((start, format!("`{text}` is not a SID or SID alias")));
                }
            }
        };
        self.i = start + len + 1;
        Ok(Node::Sid(sid))
    }
    /// The right-hand side of a relational operator: a literal, a composite, or an attribute
    /// that is not local.
    fn value(&mut self, top: bool) -> R<Node> {
        match self.peek() {
            Some('"') => {
                let start = self.i + 1;
                let Some(len) = self.s[start..].find('"') else {
                    return self.err("string is not closed with `\"`");
                };
                self.i = start + len + 1;
                Ok(Node::Str(self.s[start..start + len].to_string()))
            }
            Some('#') => {
                self.i += 1;
                let rest = &self.s[self.i..];
                let n = rest
                    .find(|c: char| !(c.is_ascii_hexdigit() || c == '#'))
                    .unwrap_or(rest.len());
                let mut digits: String = rest[..n]
                    .chars()
                    .map(|c| if c == '#' { '0' } else { c })
                    .collect();
                if !digits.len().is_multiple_of(2) {
                    digits.insert(0, '0');
                }
                self.i += n;
                let bytes = (0..digits.len())
                    .step_by(2)
                    .map(|k| u8::from_str_radix(&digits[k..k + 2], 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|_| (self.i, "bad octet string".to_string()))?;
                Ok(Node::Octets(bytes))
            }
            Some('{') if top => {
                self.i += 1;
                let mut v = Vec::new();
                if !self.eat("}") {
                    v.push(self.value(false)?);
                    while self.eat(",") {
                        v.push(self.value(false)?);
                    }
                    self.expect("}")?;
                }
                Ok(Node::Composite(v))
            }
            Some('@') if top => self.attribute(),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' => self.int(),
            _ if self.word().eq_ignore_ascii_case("SID") => self.sid(),
            _ => self.err(
                "expected a value: \"string\", a number, #octets, SID(…), {…} or @Prefix.attribute",
            ),
        }
    }
    fn int(&mut self) -> R<Node> {
        let rest = &self.s[self.i..];
        let (sign, body) = match rest.as_bytes()[0] {
            b'-' => (2, &rest[1..]),
            b'+' => (1, &rest[1..]),
            _ => (3, rest),
        };
        let (base, radix, digits_at) = if body.starts_with("0x") || body.starts_with("0X") {
            (3, 16, 2)
        } else if body.starts_with('0') && body.len() > 1 && body.as_bytes()[1].is_ascii_digit() {
            (1, 8, 1)
        } else {
            (2, 10, 0)
        };
        let digits = &body[digits_at..];
        let n = digits
            .find(|c: char| !c.is_digit(radix))
            .unwrap_or(digits.len());
        let v = u64::from_str_radix(&digits[..n], radix)
            .map_err(|_| (self.i, "number out of range".to_string()))?;
        let v = if sign == 2 {
            if v > 1 << 63 {
                return self.err("number out of range");
            }
            v.wrapping_neg()
        } else {
            v
        };
        self.i += (rest.len() - body.len()) + digits_at + n;
        Ok(Node::Int(v, sign, base))
    }
}

fn emit(n: &Node, out: &mut Vec<u8>) {
    let sized = |out: &mut Vec<u8>, code: u8, body: &[u8]| {
        out.push(code);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
    };
    let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    match n {
        Node::Attr(k, name) => sized(out, *k, &utf16(name)),
        Node::Int(v, sign, base) => {
            out.push(0x04);
            out.extend_from_slice(&v.to_le_bytes());
            out.extend_from_slice(&[*sign, *base]);
        }
        Node::Str(s) => sized(out, 0x10, &utf16(s)),
        Node::Octets(b) => sized(out, 0x18, b),
        Node::Sid(s) => sized(out, 0x51, &s.to_bytes()),
        Node::Composite(v) => {
            let mut inner = Vec::new();
            for x in v {
                emit(x, &mut inner);
            }
            sized(out, 0x50, &inner);
        }
        Node::Op(op, args) => {
            for a in args {
                emit(a, out);
            }
            out.push(*op);
        }
    }
}

/// Compiles the condition at the start of `s` (`(…)`, spaces before it allowed). Returns the
/// application data of the ACE (`artx`, tokens, padding) and how many bytes of `s` it took.
/// Errors give a byte offset into `s`.
pub fn compile(s: &str, domain: Option<&Sid>) -> Result<(Vec<u8>, usize), (usize, String)> {
    let mut p = Parser {
        s,
        i: 0,
        domain,
        depth: 0,
    };
    if p.peek() != Some('(') {
        return p.err("a conditional expression starts with `(`");
    }
    p.i += 1;
    let root = p.or()?;
    p.expect(")")?;
    let mut out = MAGIC.to_vec();
    emit(&root, &mut out);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    Ok((out, p.i))
}

// ---- tokens → SDDL text -------------------------------------------------------------------

fn read_tokens(b: &[u8], nesting: usize) -> Option<Vec<Node>> {
    if nesting > 1 {
        return None; // a composite inside a composite
    }
    // Each operand with the depth of its tree.
    let mut stack: Vec<(Node, usize)> = Vec::new();
    let op = |stack: &mut Vec<(Node, usize)>, code: u8, arity: usize| -> Option<()> {
        let at = stack.len().checked_sub(arity)?;
        let args: Vec<(Node, usize)> = stack.drain(at..).collect();
        let d = 1 + args.iter().map(|a| a.1).max().unwrap_or(0);
        if d > MAX_DEPTH {
            return None;
        }
        stack.push((Node::Op(code, args.into_iter().map(|a| a.0).collect()), d));
        Some(())
    };
    let mut i = 0;
    while i < b.len() {
        let code = b[i];
        i += 1;
        let sized = |i: &mut usize| -> Option<&[u8]> {
            let len = u32::from_le_bytes(b.get(*i..*i + 4)?.try_into().ok()?) as usize;
            let body = b.get(*i + 4..*i + 4 + len)?;
            *i += 4 + len;
            Some(body)
        };
        let utf16 = |body: &[u8]| -> Option<String> {
            if !body.len().is_multiple_of(2) {
                return None;
            }
            String::from_utf16(
                &body
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect::<Vec<_>>(),
            )
            .ok()
        };
        match code {
            0x00 => {
                // Padding: only zeros may follow.
                return (b[i..].iter().all(|&x| x == 0))
                    .then(|| stack.into_iter().map(|x| x.0).collect());
            }
            0x01..=0x04 => {
                let v = u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?);
                let (sign, base) = (*b.get(i + 8)?, *b.get(i + 9)?);
                if !(1..=3).contains(&sign) || !(1..=3).contains(&base) {
                    return None;
                }
                i += 10;
                stack.push((Node::Int(v, sign, base), 1));
            }
            0x10 => stack.push((Node::Str(utf16(sized(&mut i)?)?), 1)),
            0x18 => stack.push((Node::Octets(sized(&mut i)?.to_vec()), 1)),
            0x50 => stack.push((
                Node::Composite(read_tokens(sized(&mut i)?, nesting + 1)?),
                2,
            )),
            0x51 => {
                let body = sized(&mut i)?;
                let (sid, n) = Sid::read(body).ok()?;
                if n != body.len() {
                    return None;
                }
                stack.push((Node::Sid(sid), 1));
            }
            LOCAL | 0xf9..=0xfb => stack.push((Node::Attr(code, utf16(sized(&mut i)?)?), 1)),
            AND | OR => op(&mut stack, code, 2)?,
            NOT => op(&mut stack, NOT, 1)?,
            c if UNARY.iter().any(|(_, o)| *o == c) => op(&mut stack, c, 1)?,
            c if RELATIONAL.iter().any(|(_, o)| *o == c) => op(&mut stack, c, 2)?,
            _ => return None,
        }
    }
    Some(stack.into_iter().map(|x| x.0).collect())
}

fn print(n: &Node, domain: Option<&Sid>, out: &mut String) {
    match n {
        Node::Attr(k, name) => {
            if let Some((p, _)) = ATTRIBUTES.iter().find(|(_, c)| c == k) {
                out.push_str(p);
            }
            out.push_str(name);
        }
        Node::Int(v, sign, base) => {
            let neg = *sign == 2;
            let mag = if neg { v.wrapping_neg() } else { *v };
            if neg {
                out.push('-');
            } else if *sign == 1 {
                out.push('+');
            }
            let _ = match base {
                1 => write!(out, "0{mag:o}"),
                3 => write!(out, "0x{mag:x}"),
                _ => write!(out, "{mag}"),
            };
        }
        Node::Str(s) => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
        Node::Octets(b) => {
            out.push('#');
            for x in b {
                let _ = write!(out, "{x:02x}");
            }
        }
        Node::Sid(s) => {
            out.push_str("SID(");
            match sid_alias(s, domain) {
                Some(a) => out.push_str(a),
                None => {
                    let _ = write!(out, "{s}");
                }
            }
            out.push(')');
        }
        Node::Composite(v) => {
            out.push('{');
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                print(x, domain, out);
            }
            out.push('}');
        }
        Node::Op(op, args) => {
            let paren = |x: &Node, out: &mut String| {
                out.push('(');
                print(x, domain, out);
                out.push(')');
            };
            match (*op, args.as_slice()) {
                (AND | OR, [l, r]) => {
                    paren(l, out);
                    out.push_str(if *op == AND { " && " } else { " || " });
                    paren(r, out);
                }
                (NOT, [a]) => {
                    out.push('!');
                    paren(a, out);
                }
                (c, [a]) => {
                    let name = UNARY.iter().find(|(_, o)| *o == c).map_or("?", |x| x.0);
                    out.push_str(name);
                    out.push(' ');
                    print(a, domain, out);
                }
                (c, [l, r]) => {
                    let name = RELATIONAL
                        .iter()
                        .find(|(_, o)| *o == c)
                        .map_or("?", |x| x.0);
                    print(l, domain, out);
                    out.push(' ');
                    out.push_str(name);
                    out.push(' ');
                    print(r, domain, out);
                }
                _ => out.push('?'),
            }
        }
    }
}

/// The SDDL text of an ACE's conditional expression (`(…)`), or `None` when the bytes are not a
/// well-formed expression.
pub fn decompile(data: &[u8], domain: Option<&Sid>) -> Option<String> {
    let tokens = data.strip_prefix(MAGIC)?;
    let stack = read_tokens(tokens, 0)?;
    let [root] = stack.as_slice() else {
        return None;
    };
    let mut out = String::from("(");
    print(root, domain, &mut out);
    out.push(')');
    Some(out)
}
