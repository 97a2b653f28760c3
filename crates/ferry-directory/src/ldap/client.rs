//! ferry's LDAPv3 client for reading: connect (`ldap://`, `ldaps://`, `ldapi://`), simple bind,
//! search (paged with RFC 2696's control when asked), unbind. Imports and connection tests use it;
//! writes go through `ldap3`.
//!
//! Why not `ldap3` for reads: it parses each message into an owned tree of tags (a `Vec` per
//! value) and then clones that tree (`protocol.rs`, `let tag = tag.clone();` in 0.12.1), and hands
//! it over through a channel between two tasks. On entries shaped like real directories that was
//! most of the import's CPU (docs/BENCHMARKS.md). Here messages are framed in one read buffer and
//! each entry is handed to the caller as slices of that buffer: a value is copied once, into the
//! `String` the object keeps, or not at all when the object does not keep it.
//!
//! As with `ldap3`'s `EntriesOnly` adapter, search result references (continuation referrals) and
//! intermediate responses are skipped; a result code other than success is an error carrying the
//! server's code, text and referral URIs. TLS is rustls with the system's root certificates, as
//! `ldap3` configures it. Each read and write waits at most the configured timeout.

use super::ber::{self, Ber, Malformed, tag};
use ldap3::asn1::ASNTag;
use std::io;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// RFC 2696's Simple Paged Results control.
const PAGED_RESULTS: &[u8] = b"1.2.840.113556.1.4.319";
/// No message this client accepts is larger: a hostile length cannot make it reserve gigabytes.
const MAX_MESSAGE: usize = 256 << 20;
const READ_BUFFER: usize = 256 << 10;
/// Reads go into at least this much free space (the unread rest is moved to the front first).
const MIN_READ: usize = 16 << 10;

/// Why an operation failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection could not be made, or broke.
    Io(io::Error),
    /// The server did not answer within the timeout.
    Timeout,
    /// The server answered with a result code other than success.
    Result {
        rc: u32,
        text: String,
        refs: Vec<String>,
    },
    /// The server sent something that is not LDAP.
    Protocol(String),
    /// What this client was asked to send cannot be sent (a bad URL or filter).
    Invalid(String),
}

impl From<Malformed> for Failure {
    fn from(_: Malformed) -> Failure {
        Failure::Protocol("the server sent a malformed message".into())
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Scope {
    Base = 0,
    Subtree = 2,
}

/// A search result entry as it came off the wire, borrowed from the read buffer.
#[derive(Clone, Copy)]
pub(crate) struct Entry<'a> {
    body: &'a [u8],
}

impl<'a> Entry<'a> {
    /// Its DN.
    pub fn dn(&self) -> Result<&'a [u8], Malformed> {
        Ber::new(self.body).expect(tag::OCTET_STRING)
    }

    /// A cursor over its attributes (each a SEQUENCE of the name and a SET of values): read
    /// them with [`attribute`].
    pub fn attributes(&self) -> Result<Ber<'a>, Malformed> {
        let mut b = Ber::new(self.body);
        b.expect(tag::OCTET_STRING)?;
        Ok(Ber::new(b.expect(tag::SEQUENCE)?))
    }

    #[cfg(test)]
    pub fn from_body(body: &'a [u8]) -> Entry<'a> {
        Entry { body }
    }
}

/// Reads one attribute: its name and a cursor over its values.
pub(crate) fn attribute<'a>(attrs: &mut Ber<'a>) -> Result<(&'a [u8], Values<'a>), Malformed> {
    let mut pair = Ber::new(attrs.expect(tag::SEQUENCE)?);
    let name = pair.expect(tag::OCTET_STRING)?;
    let values = pair.expect(tag::SET)?;
    Ok((name, Values(Ber::new(values))))
}

/// The values of one attribute.
pub(crate) struct Values<'a>(Ber<'a>);

impl<'a> Iterator for Values<'a> {
    type Item = Result<&'a [u8], Malformed>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            None
        } else {
            Some(self.0.expect(tag::OCTET_STRING))
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An open connection.
pub(crate) struct Client {
    io: Box<dyn Stream>,
    /// Received bytes; `buf[start..end]` is not yet consumed.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    last_id: i32,
    timeout: Duration,
}

static TLS: LazyLock<Result<Arc<rustls::ClientConfig>, String>> = LazyLock::new(|| {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
        .map_err(|e| format!("cannot set up TLS: {e}"))
});

async fn within<T>(t: Duration, f: impl Future<Output = io::Result<T>>) -> Result<T, Failure> {
    match tokio::time::timeout(t, f).await {
        Ok(r) => r.map_err(Failure::Io),
        Err(_) => Err(Failure::Timeout),
    }
}

/// `%2F` → `/` in an `ldapi://` socket path.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

impl Client {
    /// Connects to `url` (and, for `ldaps://`, completes the TLS handshake) within `timeout`.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Client, Failure> {
        let u = url::Url::parse(url)
            .map_err(|e| Failure::Invalid(format!("`{url}` is not an LDAP URL: {e}")))?;
        let io: Box<dyn Stream> = match u.scheme() {
            "ldapi" => {
                let path = percent_decode(u.host_str().unwrap_or_default());
                if path.is_empty() {
                    return Err(Failure::Invalid(format!(
                        "`{url}` names no socket: write its path percent-encoded, e.g. ldapi://%2Fvar%2Frun%2Fslapd%2Fldapi"
                    )));
                }
                let path = std::path::PathBuf::from(String::from_utf8_lossy(&path).into_owned());
                Box::new(within(timeout, UnixStream::connect(path)).await?)
            }
            scheme @ ("ldap" | "ldaps") => {
                let tls = scheme == "ldaps";
                let port = u.port().unwrap_or(if tls { 636 } else { 389 });
                let host = match u.host() {
                    Some(url::Host::Domain("")) | None => url::Host::Domain("localhost"),
                    Some(h) => h,
                };
                let tcp = within(timeout, async {
                    match host {
                        url::Host::Domain(d) => TcpStream::connect((d, port)).await,
                        url::Host::Ipv4(a) => TcpStream::connect((a, port)).await,
                        url::Host::Ipv6(a) => TcpStream::connect((a, port)).await,
                    }
                })
                .await?;
                tcp.set_nodelay(true).map_err(Failure::Io)?;
                if tls {
                    let config = TLS.as_ref().map_err(|e| Failure::Invalid(e.clone()))?;
                    let name = match host {
                        url::Host::Domain(d) => rustls::pki_types::ServerName::try_from(d)
                            .map_err(|e| Failure::Invalid(format!("`{d}`: {e}")))?
                            .to_owned(),
                        url::Host::Ipv4(a) => std::net::IpAddr::V4(a).into(),
                        url::Host::Ipv6(a) => std::net::IpAddr::V6(a).into(),
                    };
                    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                    Box::new(within(timeout, connector.connect(name, tcp)).await?)
                } else {
                    Box::new(tcp)
                }
            }
            other => {
                return Err(Failure::Invalid(format!(
                    "`{url}`: unknown scheme `{other}` (expected ldap, ldaps or ldapi)"
                )));
            }
        };
        Ok(Client {
            io,
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            last_id: 0,
            timeout,
        })
    }

    /// A simple bind.
    pub async fn bind(&mut self, dn: &str, password: &str) -> Result<(), Failure> {
        let id = self
            .send(
                |o| {
                    ber::tlv(o, tag::BIND_REQUEST, |o| {
                        ber::integer(o, tag::INTEGER, 3);
                        ber::octets(o, tag::OCTET_STRING, dn.as_bytes());
                        ber::octets(o, tag::SIMPLE_AUTH, password.as_bytes());
                    })
                },
                None,
            )
            .await?;
        let done = self.responses(id, |_| {}).await?;
        done.success()
    }

    /// Searches, calling `entry` with each entry as it arrives. With `page_size`, asks for pages
    /// of that many entries (RFC 2696) until the server's cookie is empty; a server that ignores
    /// the control sends everything at once, which is as good.
    pub async fn search(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        page_size: Option<i32>,
        mut entry: impl FnMut(Entry<'_>),
    ) -> Result<(), Failure> {
        let parsed = ldap3::parse_filter(filter)
            .map_err(|()| Failure::Invalid(format!("`{filter}` is not a valid LDAP filter")))?;
        let mut f = Vec::new();
        ber::structure(&mut f, &parsed.into_structure()).map_err(|_| {
            Failure::Invalid(format!("`{filter}` cannot be encoded as an LDAP filter"))
        })?;
        let mut request = Vec::new();
        ber::tlv(&mut request, tag::SEARCH_REQUEST, |o| {
            ber::octets(o, tag::OCTET_STRING, base.as_bytes());
            ber::integer(o, tag::ENUMERATED, scope as i64);
            ber::integer(o, tag::ENUMERATED, 0); // never dereference aliases
            ber::integer(o, tag::INTEGER, 0); // no size limit
            ber::integer(o, tag::INTEGER, 0); // no time limit
            ber::boolean(o, false); // types and values
            o.extend_from_slice(&f);
            ber::tlv(o, tag::SEQUENCE, |o| {
                for a in attrs {
                    ber::octets(o, tag::OCTET_STRING, a.as_bytes());
                }
            });
        });
        let mut cookie: Vec<u8> = Vec::new();
        loop {
            let control = page_size.map(|size| {
                let mut c = Vec::new();
                ber::tlv(&mut c, tag::SEQUENCE, |o| {
                    ber::octets(o, tag::OCTET_STRING, PAGED_RESULTS);
                    let mut value = Vec::new();
                    ber::tlv(&mut value, tag::SEQUENCE, |v| {
                        ber::integer(v, tag::INTEGER, i64::from(size));
                        ber::octets(v, tag::OCTET_STRING, &cookie);
                    });
                    ber::octets(o, tag::OCTET_STRING, &value);
                });
                c
            });
            let id = self
                .send(|o| o.extend_from_slice(&request), control.as_deref())
                .await?;
            let done = self.responses(id, &mut entry).await?;
            done.success()?;
            match done.cookie {
                Some(c) if page_size.is_some() && !c.is_empty() => cookie = c,
                _ => return Ok(()),
            }
        }
    }

    /// Ends the session (errors are of no interest: the connection is closed either way).
    pub async fn unbind(mut self) {
        if self
            .send(|o| ber::octets(o, tag::UNBIND_REQUEST, &[]), None)
            .await
            .is_ok()
        {
            let _ = within(self.timeout, self.io.shutdown()).await;
        }
    }

    /// Sends one message: the operation `op` writes, with `controls` (each an encoded Control).
    async fn send(
        &mut self,
        op: impl FnOnce(&mut Vec<u8>),
        controls: Option<&[u8]>,
    ) -> Result<i32, Failure> {
        self.last_id = self.last_id.checked_add(1).unwrap_or(1);
        let id = self.last_id;
        let mut msg = Vec::new();
        ber::tlv(&mut msg, tag::SEQUENCE, |o| {
            ber::integer(o, tag::INTEGER, i64::from(id));
            op(o);
            if let Some(c) = controls {
                ber::octets(o, tag::CONTROLS, c);
            }
        });
        within(self.timeout, async {
            self.io.write_all(&msg).await?;
            self.io.flush().await
        })
        .await?;
        Ok(id)
    }

    /// Reads the responses to request `id` up to its final one, passing search result entries
    /// to `entry`.
    async fn responses(
        &mut self,
        id: i32,
        mut entry: impl FnMut(Entry<'_>),
    ) -> Result<Done, Failure> {
        loop {
            let Some((s, e)) = self.frame()? else {
                self.fill().await?;
                continue;
            };
            let mut m = Ber::new(&self.buf[s..e]);
            let msg_id = ber::int(m.expect(tag::INTEGER)?)?;
            let (op, body) = m.next()?;
            if msg_id == 0 {
                // An unsolicited notification: the only one defined is the notice of
                // disconnection, after which the server closes the connection.
                if op == tag::EXTENDED_RESPONSE {
                    let r = Done::read(body, None)?;
                    return Err(Failure::Result {
                        rc: r.rc,
                        text: format!("the server ended the session: {}", r.text),
                        refs: r.refs,
                    });
                }
                continue;
            }
            if i64::from(id) != msg_id {
                continue;
            }
            match op {
                tag::SEARCH_RESULT_ENTRY => entry(Entry { body }),
                tag::SEARCH_RESULT_REFERENCE | tag::INTERMEDIATE_RESPONSE => {}
                tag::SEARCH_RESULT_DONE | tag::BIND_RESPONSE | tag::EXTENDED_RESPONSE => {
                    // Active Directory may put an extended response's name after the result
                    // where the controls belong; anything but `[0]` there is ignored.
                    let controls = match m.peek() {
                        Some(tag::CONTROLS) => Some(m.expect(tag::CONTROLS)?),
                        _ => None,
                    };
                    return Ok(Done::read(body, controls)?);
                }
                other => {
                    return Err(Failure::Protocol(format!(
                        "the server answered with an unexpected operation (tag {other:#04x})"
                    )));
                }
            }
        }
    }

    /// The next complete message's contents in `buf`, consuming it; `None` when more must be read.
    fn frame(&mut self) -> Result<Option<(usize, usize)>, Failure> {
        let avail = &self.buf[self.start..self.end];
        let Some((t, len, h)) = ber::header(avail)? else {
            return Ok(None);
        };
        if t != tag::SEQUENCE {
            return Err(Failure::Protocol(
                "the server sent something that is not an LDAP message".into(),
            ));
        }
        if len > MAX_MESSAGE {
            return Err(Failure::Protocol(format!(
                "the server sent a message of {len} bytes (at most {MAX_MESSAGE} are accepted)"
            )));
        }
        if avail.len() < h + len {
            return Ok(None);
        }
        let s = self.start + h;
        self.start = s + len;
        Ok(Some((s, s + len)))
    }

    /// Reads more bytes, making room for the message that has begun arriving.
    async fn fill(&mut self) -> Result<(), Failure> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let avail = self.end - self.start;
        // The bytes the buffer must hold from `start`: the whole message once its header is in,
        // else at least one more.
        let want = match ber::header(&self.buf[self.start..self.end]) {
            Ok(Some((_, len, h))) => (h + len).max(avail + 1),
            _ => avail + 1,
        };
        if self.start > 0
            && (self.start + want > self.buf.len() || self.buf.len() - self.end < MIN_READ)
        {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = avail;
        }
        if self.start + want > self.buf.len() {
            self.buf.resize(self.start + want, 0);
        }
        let n = within(self.timeout, self.io.read(&mut self.buf[self.end..])).await?;
        if n == 0 {
            return Err(Failure::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )));
        }
        self.end += n;
        Ok(())
    }
}

/// A final response: its LDAPResult and, for a search, the paged results cookie.
#[derive(Debug)]
struct Done {
    rc: u32,
    text: String,
    refs: Vec<String>,
    cookie: Option<Vec<u8>>,
}

impl Done {
    fn read(body: &[u8], controls: Option<&[u8]>) -> Result<Done, Malformed> {
        let mut b = Ber::new(body);
        let rc = u32::try_from(ber::int(b.expect(tag::ENUMERATED)?)?).map_err(|_| Malformed)?;
        let _matched = b.expect(tag::OCTET_STRING)?;
        let text = String::from_utf8_lossy(b.expect(tag::OCTET_STRING)?).into_owned();
        let mut refs = Vec::new();
        if b.peek() == Some(tag::REFERRAL) {
            let mut uris = Ber::new(b.expect(tag::REFERRAL)?);
            while !uris.is_empty() {
                refs.push(String::from_utf8_lossy(uris.expect(tag::OCTET_STRING)?).into_owned());
            }
        }
        let mut cookie = None;
        let mut cs = Ber::new(controls.unwrap_or_default());
        while !cs.is_empty() {
            let mut c = Ber::new(cs.expect(tag::SEQUENCE)?);
            let oid = c.expect(tag::OCTET_STRING)?;
            if c.peek() == Some(tag::BOOLEAN) {
                c.next()?;
            }
            if oid == PAGED_RESULTS {
                let value = c.expect(tag::OCTET_STRING)?;
                let mut v = Ber::new(Ber::new(value).expect(tag::SEQUENCE)?);
                let _estimate = v.expect(tag::INTEGER)?;
                cookie = Some(v.expect(tag::OCTET_STRING)?.to_vec());
            }
        }
        Ok(Done {
            rc,
            text,
            refs,
            cookie,
        })
    }

    fn success(&self) -> Result<(), Failure> {
        if self.rc == 0 {
            Ok(())
        } else {
            Err(Failure::Result {
                rc: self.rc,
                text: self.text.clone(),
                refs: self.refs.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(rc: i64, text: &str, refs: &[&str]) -> Vec<u8> {
        let mut b = Vec::new();
        ber::integer(&mut b, tag::ENUMERATED, rc);
        ber::octets(&mut b, tag::OCTET_STRING, b"");
        ber::octets(&mut b, tag::OCTET_STRING, text.as_bytes());
        if !refs.is_empty() {
            ber::tlv(&mut b, tag::REFERRAL, |o| {
                for r in refs {
                    ber::octets(o, tag::OCTET_STRING, r.as_bytes());
                }
            });
        }
        b
    }

    fn paged(cookie: &[u8]) -> Vec<u8> {
        let mut c = Vec::new();
        ber::tlv(&mut c, tag::SEQUENCE, |o| {
            ber::octets(o, tag::OCTET_STRING, PAGED_RESULTS);
            ber::boolean(o, false);
            let mut v = Vec::new();
            ber::tlv(&mut v, tag::SEQUENCE, |v| {
                ber::integer(v, tag::INTEGER, 0);
                ber::octets(v, tag::OCTET_STRING, cookie);
            });
            ber::octets(o, tag::OCTET_STRING, &v);
        });
        c
    }

    #[test]
    fn results_with_referrals_and_cookies() {
        let d = Done::read(&result(10, "go elsewhere", &["ldap://dc2/"]), None).unwrap();
        assert_eq!((d.rc, d.text.as_str()), (10, "go elsewhere"));
        assert_eq!(d.refs, ["ldap://dc2/"]);
        assert!(matches!(d.success(), Err(Failure::Result { rc: 10, .. })));
        let controls = paged(b"next");
        let d = Done::read(&result(0, "", &[]), Some(&controls)).unwrap();
        assert_eq!(d.cookie.as_deref(), Some(&b"next"[..]));
        assert!(d.success().is_ok());
        // Truncated results are malformed, not a panic.
        let r = result(0, "x", &[]);
        for cut in 0..r.len() {
            assert!(Done::read(&r[..cut], None).is_err(), "{cut}");
        }
    }

    #[test]
    fn ldapi_paths_are_percent_decoded() {
        assert_eq!(
            percent_decode("%2Fvar%2Frun%2Fslapd%2fldapi"),
            b"/var/run/slapd/ldapi"
        );
        assert_eq!(percent_decode("a%2"), b"a%2");
    }

    /// A server on a socket pair: frames split at every byte boundary still decode, and a paged
    /// search follows the cookie.
    #[tokio::test]
    async fn paged_search_over_a_fragmenting_stream() {
        let (ours, mut theirs) = tokio::io::duplex(7);
        let mut c = Client {
            io: Box::new(ours),
            buf: vec![0; 16],
            start: 0,
            end: 0,
            last_id: 0,
            timeout: Duration::from_secs(5),
        };
        let server = tokio::spawn(async move {
            let mut inbox = Vec::new();
            let mut pages = 0;
            loop {
                // Read one request.
                let mut chunk = [0u8; 64];
                let (id, op) = loop {
                    if let Ok(Some((_, len, h))) = ber::header(&inbox)
                        && inbox.len() >= h + len
                    {
                        let mut m = Ber::new(&inbox[h..h + len]);
                        let id = ber::int(m.expect(tag::INTEGER).unwrap()).unwrap();
                        let (op, _) = m.next().unwrap();
                        inbox.drain(..h + len);
                        break (id, op);
                    }
                    let n = theirs.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return pages;
                    }
                    inbox.extend_from_slice(&chunk[..n]);
                };
                if op == tag::UNBIND_REQUEST {
                    return pages;
                }
                pages += 1;
                let mut out = Vec::new();
                for i in 0..3 {
                    ber::tlv(&mut out, tag::SEQUENCE, |o| {
                        ber::integer(o, tag::INTEGER, id);
                        ber::tlv(o, tag::SEARCH_RESULT_ENTRY, |o| {
                            let dn = format!("cn=e{pages}-{i}");
                            ber::octets(o, tag::OCTET_STRING, dn.as_bytes());
                            ber::tlv(o, tag::SEQUENCE, |o| {
                                ber::tlv(o, tag::SEQUENCE, |o| {
                                    ber::octets(o, tag::OCTET_STRING, b"photo");
                                    ber::tlv(o, tag::SET, |o| {
                                        ber::octets(o, tag::OCTET_STRING, &[0xff; 300]);
                                    });
                                });
                            });
                        });
                    });
                }
                // A continuation reference, skipped.
                ber::tlv(&mut out, tag::SEQUENCE, |o| {
                    ber::integer(o, tag::INTEGER, id);
                    ber::tlv(o, tag::SEARCH_RESULT_REFERENCE, |o| {
                        ber::octets(o, tag::OCTET_STRING, b"ldap://elsewhere/");
                    });
                });
                ber::tlv(&mut out, tag::SEQUENCE, |o| {
                    ber::integer(o, tag::INTEGER, id);
                    ber::tlv(o, tag::SEARCH_RESULT_DONE, |o| {
                        o.extend_from_slice(&result(0, "", &[]))
                    });
                    let cookie: &[u8] = if pages < 2 { b"more" } else { b"" };
                    ber::octets(o, tag::CONTROLS, &paged(cookie));
                });
                theirs.write_all(&out).await.unwrap();
            }
        });
        let mut dns = Vec::new();
        c.search("dc=x", Scope::Subtree, "(cn=*)", &["*"], Some(3), |e| {
            let (dn, mut attrs) = (e.dn().unwrap(), e.attributes().unwrap());
            let (name, mut values) = attribute(&mut attrs).unwrap();
            assert_eq!(name, b"photo");
            assert_eq!(values.next().unwrap().unwrap().len(), 300);
            dns.push(String::from_utf8(dn.to_vec()).unwrap());
        })
        .await
        .unwrap();
        assert_eq!(
            dns,
            [
                "cn=e1-0", "cn=e1-1", "cn=e1-2", "cn=e2-0", "cn=e2-1", "cn=e2-2"
            ]
        );
        c.unbind().await;
        assert_eq!(server.await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_closed_connection_and_garbage_are_errors() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut c = Client {
            io: Box::new(ours),
            buf: vec![0; 16],
            start: 0,
            end: 0,
            last_id: 0,
            timeout: Duration::from_secs(5),
        };
        theirs.write_all(&[0x04, 0x01, 0x00]).await.unwrap();
        let e = c.bind("cn=x", "y").await.unwrap_err();
        assert!(matches!(e, Failure::Protocol(_)), "{e:?}");
        let (ours, theirs) = tokio::io::duplex(64);
        c.io = Box::new(ours);
        (c.start, c.end) = (0, 0);
        drop(theirs);
        let e = c.responses(1, |_| {}).await.unwrap_err();
        assert!(matches!(e, Failure::Io(_)), "{e:?}");
    }

    #[tokio::test]
    async fn silence_is_a_timeout() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut c = Client {
            io: Box::new(ours),
            buf: vec![0; 16],
            start: 0,
            end: 0,
            last_id: 0,
            timeout: Duration::from_millis(50),
        };
        let e = c.bind("cn=x", "y").await.unwrap_err();
        assert!(matches!(e, Failure::Timeout), "{e:?}");
    }
}
